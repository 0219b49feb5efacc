/**
 * What each open session was last sent of the policy's outputs (its peer set, packet filter,
 * SSH policy and self capabilities), so that a policy change or a node change that affects
 * others sends each session only what changed for it.
 *
 * The policy engine changes in place, so the old outputs cannot be asked for after a change:
 * they are remembered when a session gets its full map and after each change round. The filter
 * is kept as its chunks (filter_chunks.ts: their text is shared, and a change sends only the
 * chunks that differ); SSH policy and capabilities as short digests; peer sets are interned (PeerSetPool),
 * so an allow-all tailnet of 10,000 nodes holds no per-session peer lists at all.
 *
 * A round compares, for each session asked about, the remembered outputs with the current
 * ones. After a node change (`changed` lists the nodes whose own attributes changed), peers
 * are compared only for those nodes: whether a sees b depends only on a, b and the policy, so
 * no other pair can have changed. A session whose own node changed, and every session after a
 * new policy, is compared in full.
 */
import { createHash } from "node:crypto";
import type { Mapper } from "./mapper.ts";
import { NO_SSH_POLICY } from "./mapper.ts";
import type { Json } from "../tailcfg/json.ts";
import type { FilterRule, SSHPolicy } from "../tailcfg/types.ts";
import { type FilterChunk, packetFiltersJson, sameChunk } from "./filter_chunks.ts";
import { EVERYONE, indexOfSorted, type PeerRecord, PeerSetPool, sortedIds } from "./peer_sets.ts";

/** What a session must be sent so it matches the current policy. */
export interface PolicyDelta {
  /** Send a full map instead: nothing was remembered, or the delta would be larger. */
  readonly full: boolean;
  /** Newly visible peers (they need full nodes and their users' profiles). */
  readonly added: readonly number[];
  /** Peers no longer visible. */
  readonly removed: readonly number[];
  /** The filter chunks that changed (null: gone), as MapResponse.PacketFilters, if any. */
  readonly filtersJson: Json<Record<string, FilterRule[] | null>> | null;
  /** The new SSH policy as JSON (an empty one when it went away), when it changed. */
  readonly sshJson: Json<SSHPolicy> | null;
  /** The node's own capabilities changed: it needs its Node again. */
  readonly selfChanged: boolean;
}

interface Sent {
  peers: PeerRecord;
  filter: readonly FilterChunk[];
  ssh: string;
  cap: string;
}

/** Rough JSON sizes for choosing between a delta and a full map. */
const PEER_BYTES = 600;
const REMOVED_ID_BYTES = 7;
const FULL_MAP_OVERHEAD_BYTES = 3000;

/** A short, collision-safe stand-in for a JSON text. */
function digest(json: string): string {
  if (json.length <= 64) return json;
  return "#" + createHash("sha256").update(json).digest("base64");
}

interface Membership {
  has(id: number): boolean;
}

/** The remembered outputs and the means to compute current ones (shared with rounds). */
class SentOutputs {
  readonly sent = new Map<number, Sent>();
  readonly pool = new PeerSetPool();

  constructor(readonly mapper: Mapper) {}

  /** Replaces a session's record (`next.peers` held); the old one is released. */
  replace(nodeId: number, next: Sent): void {
    const prev = this.sent.get(nodeId);
    this.sent.set(nodeId, next);
    if (prev) this.pool.release(prev.peers);
  }

  /** The node's current filter (in chunks), SSH policy and self capabilities, as JSON. */
  current(nodeId: number): { filter: FilterChunk[]; sshJson: string; capJson: string } {
    const view = this.mapper.policy;
    const ssh = view.sshPolicyFor(nodeId);
    return {
      filter: this.mapper.filterChunks(nodeId),
      // No rules and no policy mean the same to a client.
      sshJson: ssh && ssh.rules.length > 0 ? JSON.stringify(ssh) : "null",
      capJson: JSON.stringify(this.mapper.selfCapMap(nodeId)),
    };
  }

  /** A held peer record for the node's current peers. */
  currentPeers(nodeId: number): PeerRecord {
    const view = this.mapper.policy;
    if (view.seesEveryone?.()) return EVERYONE;
    return this.pool.intern(sortedIds(view.peersOf(nodeId), nodeId), nodeId);
  }

  remember(nodeId: number): void {
    const now = this.current(nodeId);
    this.replace(nodeId, {
      peers: this.currentPeers(nodeId),
      filter: now.filter,
      ssh: digest(now.sshJson),
      cap: digest(now.capJson),
    });
  }
}

export class PolicySync {
  private readonly outputs: SentOutputs;

  constructor(mapper: Mapper) {
    this.outputs = new SentOutputs(mapper);
  }

  /** Sessions remembered. */
  get size(): number {
    return this.outputs.sent.size;
  }

  /** Distinct peer arrays and the ids they hold (memory accounting for tests and benchmarks). */
  peerMemory(): { sets: number; ids: number } {
    return { sets: this.outputs.pool.setCount, ids: this.outputs.pool.idCount };
  }

  /** Remembers what a full map built now gives the node (call when one is sent). */
  remember(nodeId: number): void {
    this.outputs.remember(nodeId);
  }

  forget(nodeId: number): void {
    const prev = this.outputs.sent.get(nodeId);
    if (!prev) return;
    this.outputs.pool.release(prev.peers);
    this.outputs.sent.delete(nodeId);
  }

  /**
   * Starts a change round. `changed`: the nodes whose own attributes changed since the last
   * round (peers are compared only for them); null compares everything (a new policy).
   */
  round(changed: ReadonlySet<number> | null): PolicyRound {
    return new PolicyRound(this.outputs, changed);
  }
}

export class PolicyRound {
  private everyoneIds: Int32Array | null = null;
  private readonly viewers = new Map<number, Membership>();

  constructor(
    private readonly outputs: SentOutputs,
    private readonly changed: ReadonlySet<number> | null,
  ) {}

  /** Every current node id, ascending. */
  private everyone(): Int32Array {
    return this.everyoneIds ??= Int32Array.from(this.outputs.mapper.nodeIds());
  }

  /** The nodes that see `id` now (= the nodes `id` sees). */
  private viewersOf(id: number): Membership {
    let m = this.viewers.get(id);
    if (m === undefined) {
      if (indexOfSorted(this.everyone(), id) < 0) {
        m = { has: () => false };
      } else {
        const peers = this.outputs.mapper.policy.peersOf(id);
        m = typeof (peers as Partial<Membership>).has === "function"
          ? peers as unknown as Membership
          : new Set(peers);
      }
      this.viewers.set(id, m);
    }
    return m;
  }

  /**
   * Compares what the node's session has with the current policy and remembers the result as
   * sent. Null when nothing changed for it.
   */
  diff(nodeId: number): PolicyDelta | null {
    const sync = this.outputs;
    const prev = sync.sent.get(nodeId);
    if (!prev) {
      sync.remember(nodeId);
      return FULL;
    }
    const now = sync.current(nodeId);
    const filter = now.filter;
    const ssh = digest(now.sshJson);
    const cap = digest(now.capJson);

    const pool = sync.pool;
    const everyone = this.everyone();
    let peers: PeerRecord;
    let added: readonly number[];
    let removed: readonly number[];
    // Checking each changed node costs more than listing the peers when the node has few.
    const whole = this.changed === null || this.changed.has(nodeId) ||
      this.changed.size > pool.count(prev.peers, nodeId, everyone);
    if (whole) {
      peers = sync.currentPeers(nodeId);
      ({ added, removed } = pool.diff(prev.peers, peers, nodeId, everyone));
    } else {
      const plus: number[] = [];
      const minus: number[] = [];
      for (const other of this.changed) {
        if (other === nodeId) continue;
        const had = pool.has(prev.peers, nodeId, other, everyone);
        const has = this.viewersOf(other).has(nodeId);
        if (has && !had) plus.push(other);
        else if (had && !has) minus.push(other);
      }
      plus.sort((a, b) => a - b);
      minus.sort((a, b) => a - b);
      peers = pool.toggle(prev.peers, plus, minus, everyone);
      added = plus;
      removed = minus;
    }
    sync.replace(nodeId, { peers, filter, ssh, cap });

    const filtersJson = changedChunks(prev.filter, filter);
    const sshChanged = ssh !== prev.ssh;
    const selfChanged = cap !== prev.cap;
    if (
      added.length === 0 && removed.length === 0 && filtersJson === null && !sshChanged &&
      !selfChanged
    ) return null;

    // A delta that outgrows the full map (e.g. thousands of peers removed) is not worth it.
    const count = pool.count(peers, nodeId, everyone);
    const deltaBytes = added.length * PEER_BYTES + removed.length * REMOVED_ID_BYTES;
    const fullBytes = FULL_MAP_OVERHEAD_BYTES +
      (count > 0 ? count * PEER_BYTES : (everyone.length - 1) * REMOVED_ID_BYTES);
    if (deltaBytes > fullBytes) return FULL;

    return {
      full: false,
      added,
      removed,
      filtersJson,
      sshJson: sshChanged
        ? (now.sshJson === "null" ? NO_SSH_POLICY : now.sshJson as Json<SSHPolicy>)
        : null,
      selfChanged,
    };
  }

  /**
   * The session was sent these nodes in full (PeersChanged): it has them now, whatever it was
   * remembered to have.
   */
  noteReceived(nodeId: number, ids: readonly number[]): void {
    const prev = this.outputs.sent.get(nodeId);
    if (!prev || prev.peers.set === null) return;
    const pool = this.outputs.pool;
    const everyone = this.everyone();
    const plus = ids.filter((id) => id !== nodeId && !pool.has(prev.peers, nodeId, id, everyone));
    if (plus.length === 0) return;
    const peers = pool.toggle(prev.peers, plus, [], everyone);
    this.outputs.replace(nodeId, { ...prev, peers });
  }

  /** Ends the round (drops its memos). */
  end(): void {
    this.outputs.pool.endRound();
  }
}

const FULL: PolicyDelta = Object.freeze({
  full: true,
  added: [],
  removed: [],
  filtersJson: null,
  sshJson: null,
  selfChanged: false,
});

/** MapResponse.PacketFilters taking a session from `before` to `after`; null when alike. */
function changedChunks(
  before: readonly FilterChunk[],
  after: readonly FilterChunk[],
): Json<Record<string, FilterRule[] | null>> | null {
  if (before.length === after.length) {
    let i = 0;
    while (i < after.length && before[i].key === after[i].key && sameChunk(before[i], after[i])) {
      i++;
    }
    if (i === after.length) return null;
  }
  const old = new Map(before.map((c) => [c.key, c]));
  const set: FilterChunk[] = [];
  for (const c of after) {
    const was = old.get(c.key);
    old.delete(c.key);
    if (!was || !sameChunk(was, c)) set.push(c);
  }
  return set.length > 0 || old.size > 0 ? packetFiltersJson(set, old.keys()) : null;
}
