/**
 * The peer sets sessions were last sent, kept small enough for 10,000-node tailnets.
 *
 * A session's record is a shared, sorted id array plus at most one hidden id: its peers are the
 * array minus that id and minus the session's own node. Sessions that see the same nodes share
 * one array: when nodes see each other (allow-all, a group seeing itself) the array is the
 * group including the session's node; when they do not (clients seeing servers) it is the
 * servers, found again through a second hash key. So memory grows with the number of distinct
 * visibility classes, not with sessions × peers, and "everyone" (no policy) costs nothing.
 *
 * Hashes are sums of mixed ids, so the hash of a set plus one id is one addition away; a hash
 * hit is always confirmed by comparing contents.
 */

export interface PeerSet {
  readonly ids: Int32Array;
  /** Unique per set: keys memoised diffs and transforms. */
  readonly serial: number;
  refs: number;
  /** Index keys this set is registered under. */
  readonly keys: number[];
}

/** What a session has: `set` minus `hidden` minus its own node; `set` null = every node. */
export interface PeerRecord {
  readonly set: PeerSet | null;
  readonly hidden: number;
}

export interface PeerDiff {
  readonly added: readonly number[];
  readonly removed: readonly number[];
}

/** The record of a session that sees every node (no per-session memory). */
export const EVERYONE: PeerRecord = Object.freeze({ set: null, hidden: -1 });

const EMPTY: readonly number[] = Object.freeze([]);

function fmix(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}

/** Two independent 32-bit lanes per id; a set's hash is their sums. */
function lanes(id: number): [number, number] {
  return [fmix(id ^ 0x9e3779b9), fmix(Math.imul(id, 0x27d4eb2f) ^ 0x165667b1)];
}

function hashOf(ids: ArrayLike<number>): [number, number] {
  let a = 0, b = 0;
  for (let i = 0; i < ids.length; i++) {
    const [x, y] = lanes(ids[i]);
    a = (a + x) >>> 0;
    b = (b + y) >>> 0;
  }
  return [a, b];
}

/** 53 bits of the two lanes as one Map key. */
function keyOf(a: number, b: number): number {
  return a * 0x200000 + (b >>> 11);
}

export function indexOfSorted(ids: ArrayLike<number>, id: number): number {
  let lo = 0, hi = ids.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >>> 1;
    const v = ids[mid];
    if (v === id) return mid;
    if (v < id) lo = mid + 1;
    else hi = mid - 1;
  }
  return -1;
}

/** True when `set` minus `hidden` equals `target` plus `plus` (-1: nothing; not in target). */
function sameAs(set: Int32Array, hidden: number, target: ArrayLike<number>, plus: number): boolean {
  const want = target.length + (plus >= 0 ? 1 : 0);
  if (set.length - (hidden >= 0 ? 1 : 0) !== want) return false;
  let j = 0;
  let plusPending = plus >= 0;
  for (let i = 0; i < set.length; i++) {
    const v = set[i];
    if (v === hidden) continue;
    if (j < target.length && target[j] === v) {
      j++;
    } else if (plusPending && v === plus) {
      plusPending = false;
    } else {
      return false;
    }
  }
  return j === target.length && !plusPending;
}

function withId(sorted: Int32Array, id: number): Int32Array {
  const out = new Int32Array(sorted.length + 1);
  let i = 0;
  while (i < sorted.length && sorted[i] < id) out[i] = sorted[i++];
  out[i] = id;
  out.set(sorted.subarray(i), i + 1);
  return out;
}

/** Sorted ids from any iterable (already sorted input costs one pass). */
export function sortedIds(ids: Iterable<number>, without = -1): Int32Array {
  const list: number[] = [];
  let sorted = true;
  for (const id of ids) {
    if (id === without) continue;
    if (sorted && list.length > 0 && id <= list[list.length - 1]) sorted = false;
    list.push(id);
  }
  const out = Int32Array.from(list);
  if (!sorted) {
    out.sort();
    // Drop duplicates a careless view might yield.
    let n = 0;
    for (let i = 0; i < out.length; i++) if (i === 0 || out[i] !== out[n - 1]) out[n++] = out[i];
    return out.subarray(0, n).slice();
  }
  return out;
}

export class PeerSetPool {
  private readonly index = new Map<number, PeerRecord[]>();
  private serial = 0;
  /** Per change round: diffs between record pairs and transforms of a record. */
  private diffMemo = new Map<string, PeerDiff>();
  private toggleMemo = new Map<string, PeerRecord>();

  /** Distinct arrays held (for tests and benchmarks). */
  get setCount(): number {
    const sets = new Set<PeerSet>();
    for (const list of this.index.values()) for (const r of list) sets.add(r.set!);
    return sets.size;
  }

  /** Ids held in all arrays (for tests and benchmarks). */
  get idCount(): number {
    const sets = new Set<PeerSet>();
    for (const list of this.index.values()) for (const r of list) sets.add(r.set!);
    let n = 0;
    for (const s of sets) n += s.ids.length;
    return n;
  }

  /** A record for a session of node `self` whose peers are `peers` (sorted, without self). */
  intern(peers: Int32Array, self: number): PeerRecord {
    const [a, b] = hashOf(peers);
    const plain = keyOf(a, b);
    for (const r of this.index.get(plain) ?? EMPTY_RECORDS) {
      if (sameAs(r.set!.ids, r.hidden, peers, -1)) return this.ref(r);
    }
    if (self < 0 || indexOfSorted(peers, self) >= 0) {
      const set = this.newSet(peers);
      const rec: PeerRecord = { set, hidden: -1 };
      this.register(plain, rec);
      return this.ref(rec);
    }
    const [x, y] = lanes(self);
    const withSelf = keyOf((a + x) >>> 0, (b + y) >>> 0);
    for (const r of this.index.get(withSelf) ?? EMPTY_RECORDS) {
      if (sameAs(r.set!.ids, r.hidden, peers, self)) return this.ref(r);
    }
    // Stored with the node itself, so nodes that see each other share it; registered also as
    // "minus this node" so nodes that see the same others but not each other share it too.
    const set = this.newSet(withId(peers, self));
    const rec: PeerRecord = { set, hidden: -1 };
    this.register(withSelf, rec);
    this.register(plain, { set, hidden: self });
    return this.ref(rec);
  }

  /** Drops a session's hold on its record. */
  release(rec: PeerRecord): void {
    const set = rec.set;
    if (set === null || --set.refs > 0) return;
    for (const key of set.keys) {
      const list = this.index.get(key);
      if (!list) continue;
      const rest = list.filter((r) => r.set !== set);
      if (rest.length > 0) this.index.set(key, rest);
      else this.index.delete(key);
    }
  }

  /** Whether the session of node `self` with this record has peer `id`. */
  has(rec: PeerRecord, self: number, id: number, everyone: Int32Array): boolean {
    if (id === self || id === rec.hidden) return false;
    return indexOfSorted(rec.set?.ids ?? everyone, id) >= 0;
  }

  /** How many peers the session has. */
  count(rec: PeerRecord, self: number, everyone: Int32Array): number {
    const ids = rec.set?.ids ?? everyone;
    return ids.length - (rec.hidden >= 0 ? 1 : 0) - (indexOfSorted(ids, self) >= 0 ? 1 : 0);
  }

  /**
   * A held record for `rec` after peers were added and removed (ids other than the session's
   * own node). Sessions with the same record and the same changes share the result. The
   * caller keeps its hold on `rec` (release it when replaced).
   */
  toggle(
    rec: PeerRecord,
    added: readonly number[],
    removed: readonly number[],
    everyone: Int32Array,
  ): PeerRecord {
    if (added.length === 0 && removed.length === 0) return this.ref(rec);
    const key = `${rec.set?.serial ?? -1}/${rec.hidden}+${added.join(",")}-${removed.join(",")}`;
    let next = this.toggleMemo.get(key);
    if (next === undefined) {
      const gone = new Set(removed);
      const ids = new Set<number>();
      for (const id of rec.set?.ids ?? everyone) {
        if (id !== rec.hidden && !gone.has(id)) ids.add(id);
      }
      for (const id of added) ids.add(id);
      next = this.intern(sortedIds(ids), -1); // held by the memo until endRound
      this.toggleMemo.set(key, next);
    }
    return this.ref(next);
  }

  /**
   * What a session of node `self` must add and remove to go from `before` to `after`.
   * `everyone` is every current node (sorted); ids no longer in it are not reported removed
   * (their removal went to every session already).
   */
  diff(before: PeerRecord, after: PeerRecord, self: number, everyone: Int32Array): PeerDiff {
    if (before.set === after.set && before.hidden === after.hidden) {
      return { added: EMPTY, removed: EMPTY };
    }
    const key = `${before.set?.serial ?? -1}/${before.hidden}>${
      after.set?.serial ?? -1
    }/${after.hidden}`;
    let d = this.diffMemo.get(key);
    if (d === undefined) {
      d = mergeDiff(before, after, everyone);
      this.diffMemo.set(key, d);
    }
    if (!d.added.includes(self) && !d.removed.includes(self)) return d;
    return {
      added: d.added.filter((i) => i !== self),
      removed: d.removed.filter((i) => i !== self),
    };
  }

  /** Forgets the per-round memos (the sets they point at may be released afterwards). */
  endRound(): void {
    for (const rec of this.toggleMemo.values()) this.release(rec);
    this.diffMemo = new Map();
    this.toggleMemo = new Map();
  }

  private newSet(ids: Int32Array): PeerSet {
    return { ids, serial: this.serial++, refs: 0, keys: [] };
  }

  private register(key: number, rec: PeerRecord): void {
    const list = this.index.get(key);
    if (list) list.push(rec);
    else this.index.set(key, [rec]);
    rec.set!.keys.push(key);
  }

  private ref(rec: PeerRecord): PeerRecord {
    if (rec.set) rec.set.refs++;
    return rec;
  }
}

const EMPTY_RECORDS: readonly PeerRecord[] = Object.freeze([]);

function mergeDiff(before: PeerRecord, after: PeerRecord, everyone: Int32Array): PeerDiff {
  const a = before.set?.ids ?? everyone;
  const b = after.set?.ids ?? everyone;
  const added: number[] = [];
  const removed: number[] = [];
  let i = 0, j = 0;
  while (i < a.length || j < b.length) {
    const x = i < a.length ? a[i] : Infinity;
    const y = j < b.length ? b[j] : Infinity;
    if (x === before.hidden) {
      i++;
      continue;
    }
    if (y === after.hidden) {
      j++;
      continue;
    }
    if (x === y) {
      i++;
      j++;
    } else if (x < y) {
      if (before.set === null || indexOfSorted(everyone, x) >= 0) removed.push(x);
      i++;
    } else {
      added.push(y);
      j++;
    }
  }
  return { added, removed };
}
