/**
 * Who gets which items of a batch. Receivers are grouped by the exact set of items they get, as
 * paths in a trie keyed by item index (items are added in order), so each distinct message is
 * built and compressed once and its bytes are shared by all the sessions of its group.
 *
 * A node never gets a patch about itself: Tailscale v1.102 applies a delta's mutations in node id
 * order and stops at the first one for an id that is not its peer, silently dropping the rest
 * (peers added in the same message never reach its netmap); older clients fall back to a full
 * netmap rebuild. So a patched node branches off the shared group like a changed one does.
 */
import type { SharedMessage } from "./framing.ts";
import type { PolicyView } from "./policy_view.ts";

/** A set of items: the sessions that get exactly these share one message. */
export interface Group {
  /** Item indices, ascending. */
  items(): number[];
  /** No item at all. */
  readonly empty: boolean;
  message: SharedMessage | undefined;
  /** Ids of the full nodes among the items (computed on first use). */
  fullIds: ReadonlySet<number> | undefined;
}

/** A set of items as a path in a trie (items are added in order). */
class TrieGroup implements Group {
  private children: Map<number, TrieGroup> | undefined;
  message: SharedMessage | undefined;
  fullIds: ReadonlySet<number> | undefined;

  constructor(readonly parent: TrieGroup | null, readonly item: number) {}

  get empty(): boolean {
    return this.parent === null;
  }

  with(item: number): TrieGroup {
    this.children ??= new Map();
    let child = this.children.get(item);
    if (!child) {
      child = new TrieGroup(this, item);
      this.children.set(item, child);
    }
    return child;
  }

  items(): number[] {
    const out: number[] = [];
    if (!this.parent) return out;
    out.push(this.item);
    for (let g = this.parent; g.parent; g = g.parent) out.push(g.item);
    return out.reverse();
  }
}

/** A set of items as a list. */
class ListGroup implements Group {
  message: SharedMessage | undefined;
  fullIds: ReadonlySet<number> | undefined;

  constructor(private readonly list: number[]) {}

  get empty(): boolean {
    return this.list.length === 0;
  }

  items(): number[] {
    return this.list;
  }
}

export interface Fanout {
  /** Item `index` is about node `nodeId`: to everyone who sees it, never to the node itself. */
  add(index: number, nodeId: number): void;
  /** To the given nodes and everyone who sees one of them. */
  addToViewersOf(index: number, nodeIds: readonly number[]): void;
  groupOf(sessionId: number): Group;
}

/**
 * With a policy where everyone sees everyone, all sessions share one group and only a changed
 * node itself (which must not get itself as a peer, nor a patch about itself) gets its own: all
 * items but its own. Groups are lists made when asked for, so a batch of k changed nodes costs
 * O(k) objects; a trie made each changed node a path of k groups (k² in all, which a restart
 * storm's thousands of online flips turned into gigabytes).
 */
export function createFanout(policy: PolicyView, hasSession: (id: number) => boolean): Fanout {
  if (policy.seesEveryone?.()) {
    const all: number[] = [];
    /** Per changed node with a session: the indices of the items about it. */
    const about = new Map<number, number[]>();
    const groups = new Map<number, Group>();
    const common = new ListGroup(all);
    return {
      add: (index, nodeId) => {
        all.push(index);
        if (!hasSession(nodeId)) return;
        const own = about.get(nodeId);
        if (own) own.push(index);
        else about.set(nodeId, [index]);
      },
      addToViewersOf: (index) => {
        all.push(index);
      },
      groupOf: (id) => {
        const own = about.get(id);
        if (!own) return common;
        let group = groups.get(id);
        if (!group) {
          const skip = new Set(own);
          group = new ListGroup(all.filter((i) => !skip.has(i)));
          groups.set(id, group);
        }
        return group;
      },
    };
  }
  const root = new TrieGroup(null, -1);
  const own = new Map<number, TrieGroup>();
  return {
    add: (index, nodeId) => {
      for (const r of policy.peersOf(nodeId)) {
        if (r === nodeId || !hasSession(r)) continue;
        own.set(r, (own.get(r) ?? root).with(index));
      }
    },
    addToViewersOf: (index, nodeIds) => {
      const receivers = new Set<number>();
      for (const n of nodeIds) {
        receivers.add(n);
        for (const r of policy.peersOf(n)) receivers.add(r);
      }
      for (const r of receivers) {
        if (hasSession(r)) own.set(r, (own.get(r) ?? root).with(index));
      }
    },
    groupOf: (id) => own.get(id) ?? root,
  };
}
