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

/** A set of items, as a path in the trie. */
export class Group {
  private children: Map<number, Group> | undefined;
  message: SharedMessage | undefined;
  /** Ids of the full nodes among the items (computed on first use). */
  fullIds: ReadonlySet<number> | undefined;

  constructor(readonly parent: Group | null, readonly item: number) {}

  with(item: number): Group {
    this.children ??= new Map();
    let child = this.children.get(item);
    if (!child) {
      child = new Group(this, item);
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

export interface Fanout {
  /** Item `index` is about node `nodeId`: to everyone who sees it, never to the node itself. */
  add(index: number, nodeId: number): void;
  /** To the given nodes and everyone who sees one of them. */
  addToViewersOf(index: number, nodeIds: readonly number[]): void;
  groupOf(sessionId: number): Group;
}

/**
 * With a policy where everyone sees everyone, all sessions share one group and only a changed
 * node itself (which must not get itself as a peer, nor a patch about itself) branches off, so
 * the cost is per item, not per item × session.
 */
export function createFanout(policy: PolicyView, hasSession: (id: number) => boolean): Fanout {
  const root = new Group(null, -1);
  const own = new Map<number, Group>();
  if (policy.seesEveryone?.()) {
    let common = root;
    return {
      add: (index, nodeId) => {
        if (hasSession(nodeId) && !own.has(nodeId)) own.set(nodeId, common);
        for (const [id, g] of own) {
          if (id !== nodeId) own.set(id, g.with(index));
        }
        common = common.with(index);
      },
      addToViewersOf: (index) => {
        for (const [id, g] of own) own.set(id, g.with(index));
        common = common.with(index);
      },
      groupOf: (id) => own.get(id) ?? common,
    };
  }
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
