/**
 * Compressed slices of the peer list, for full maps in large allow-all tailnets. Nodes are
 * grouped by id range (ids are never reused, so groups are stable); each group's peer JSON is
 * joined and zstd-compressed once, as its own frame, until one of its nodes changes. A full map
 * is then a few small frames of its own plus the cached ones: zstd decoders (the client's
 * klauspost DecodeAll included) read concatenated frames as one stream.
 *
 * What a PeerChange can say on its own (online, last seen, capability version) does not rebuild
 * a slice: those change for every node in a restart storm, and each rebuild recompressed 128
 * peers. A slice remembers the values it was built with; a full map made from it is followed by
 * a patch for the ones that moved on (mapper.ts), and a slice with more than `maxStale` of them
 * is rebuilt.
 */
import { constants, zstdCompressSync } from "node:zlib";

const ZSTD_OPTS = { params: { [constants.ZSTD_c_compressionLevel]: 1 } };
const encoder = new TextEncoder();

export function zstd(text: string): Uint8Array {
  return zstdCompressSync(encoder.encode(text), ZSTD_OPTS);
}

/** A node's attributes a PeerChange carries without resending the node. */
export interface Volatile {
  online: boolean;
  /** Only while offline (the peer JSON lists LastSeen only then). */
  lastSeen: Date | null;
  cap: number | undefined;
}

export interface Chunk {
  ids: number[];
  /** The peers' JSON joined with commas (no leading comma). */
  json: string;
  users: Set<number>;
  /** zstd of "," + json, built on first use. */
  withComma?: Uint8Array;
  /** Per member, the volatile values its JSON was built with. */
  baked: Map<number, Volatile>;
  /** Members whose volatile values changed since (they may have changed back). */
  changed: Set<number>;
  /** The PeerChanges (JSON, comma-joined) from baked to current values, until `changed` grows. */
  patches?: string;
}

export interface PeerSource {
  /** All node ids, ascending. */
  nodeIds(): readonly number[];
  /** A node's cached peer JSON, wire user and volatile values, or null when it is gone. */
  peerEntry(id: number): { json: string; user: number; volatile: Volatile } | null;
}

/** The first index in ascending `ids` (from `from` on) whose id is at least `id`. */
function lowerBound(ids: readonly number[], id: number, from = 0): number {
  let lo = from;
  let hi = ids.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (ids[mid] < id) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

export class PeerChunks {
  private readonly chunks = new Map<number, Chunk>();
  private sliceKeys: number[] | null = null;

  constructor(
    private readonly source: PeerSource,
    readonly size = 128,
    readonly maxStale = 8,
  ) {}

  keyOf(id: number): number {
    return Math.floor(id / this.size);
  }

  /** A node's peer JSON changed. */
  invalidate(id: number): void {
    this.chunks.delete(this.keyOf(id));
  }

  /** Only a node's volatile values changed: its slice stays, up to `maxStale` such members. */
  volatileChanged(id: number): void {
    const key = this.keyOf(id);
    const chunk = this.chunks.get(key);
    if (!chunk) return;
    chunk.changed.add(id);
    chunk.patches = undefined;
    if (chunk.changed.size > this.maxStale) this.chunks.delete(key);
  }

  /** A node joined or left. */
  membershipChanged(id: number): void {
    this.invalidate(id);
    this.sliceKeys = null;
  }

  /**
   * Keys of the slices that have members, ascending. Members are found in the source's sorted
   * ids by binary search, so a join (a membership change) costs no pass over every node here.
   */
  keys(): readonly number[] {
    if (!this.sliceKeys) {
      const ids = this.source.nodeIds();
      const keys: number[] = [];
      for (let i = 0; i < ids.length;) {
        const key = this.keyOf(ids[i]);
        keys.push(key);
        i = lowerBound(ids, (key + 1) * this.size, i);
      }
      this.sliceKeys = keys;
    }
    return this.sliceKeys;
  }

  /** The chunk, built from the node cache when missing; `except` leaves one node out. */
  build(key: number, except?: number): Chunk {
    if (except === undefined) {
      const cached = this.chunks.get(key);
      if (cached) return cached;
    }
    const ids: number[] = [];
    const parts: string[] = [];
    const users = new Set<number>();
    const baked = new Map<number, Volatile>();
    const all = this.source.nodeIds();
    const end = lowerBound(all, (key + 1) * this.size);
    for (let i = lowerBound(all, key * this.size); i < end; i++) {
      const id = all[i];
      if (id === except) continue;
      const entry = this.source.peerEntry(id);
      if (!entry) continue;
      ids.push(id);
      parts.push(entry.json);
      users.add(entry.user);
      baked.set(id, entry.volatile);
    }
    const chunk: Chunk = { ids, json: parts.join(","), users, baked, changed: new Set() };
    if (except === undefined) this.chunks.set(key, chunk);
    return chunk;
  }

  /** zstd of "," + the chunk's JSON (cached with the chunk). */
  compressedWithComma(key: number): Uint8Array {
    const chunk = this.build(key);
    return chunk.withComma ??= zstd("," + chunk.json);
  }
}
