/**
 * A node's packet filter as named chunks (MapResponse.PacketFilters): the client keeps the
 * chunks it was sent by name, replaces or deletes them one at a time, and matches packets against
 * all of them together. A filter rule only matches or does not, so a rule whose sources are
 * split over several chunks is still the same rule.
 *
 * Why: a rule like "every member may reach tag:shared" lists every member's addresses, and each
 * joining member changes it. Sent whole, the filter of every tag:shared node (hundreds of KB)
 * went out again on every change; in chunks, one joining member changes one chunk of ~64
 * sources. Chunks are cut where the content says (after an entry whose hash ends in six zero
 * bits; in a chunk past 128 entries, three), not at fixed positions, so an entry added or removed
 * changes the chunk it falls in and, when it makes or removes a cut, the one next to it.
 *
 * A chunk's key is a hash of the rule's other fields (its destinations, protocols and grants),
 * numbered when two rules share it, plus the first source of the chunk for a split rule.
 */
import type { Json } from "../tailcfg/json.ts";
import type { FilterRule } from "../tailcfg/types.ts";

export interface FilterChunk {
  readonly key: string;
  /** JSON of the chunk's SrcIPs: the same string object while the chunk is unchanged. */
  readonly src: string;
  /** JSON of the rule's other members, each after a comma. */
  readonly rest: string;
}

/** The chunk as the FilterRule list it stands for. */
export function chunkJson(c: FilterChunk): string {
  return `[{"SrcIPs":${c.src}${c.rest}}]`;
}

/**
 * MapResponse.PacketFilters from chunks to set and keys to delete; `clearFirst` adds `"*": null`,
 * which makes the client drop every chunk it held before taking these (a full map).
 */
export function packetFiltersJson(
  set: Iterable<FilterChunk>,
  gone: Iterable<string> = [],
  clearFirst = false,
): Json<Record<string, FilterRule[] | null>> {
  const members = clearFirst ? ['"*":null'] : [];
  for (const c of set) members.push(`${JSON.stringify(c.key)}:${chunkJson(c)}`);
  for (const key of gone) members.push(`${JSON.stringify(key)}:null`);
  return `{${members.join(",")}}` as Json<Record<string, FilterRule[] | null>>;
}

/** Two chunks with the same key say the same (cheap: unchanged sources are one string). */
export function sameChunk(a: FilterChunk, b: FilterChunk): boolean {
  return a.src === b.src && a.rest === b.rest;
}

/** Rules with at most this many sources stay whole. */
const SPLIT_ABOVE = 96;
/** Cut after an entry whose hash has these low bits all zero (~64 entries a chunk)... */
const CUT_MASK = 63;
/** ...or, in a chunk already this long, these (so a long run without a cut ends soon)... */
const LONG_ENTRIES = 128;
const LONG_CUT_MASK = 7;
/** ...or after this many entries, whatever the hashes (practically never reached). */
const MAX_ENTRIES = 512;

/** Text kept for interning; past it the table starts over. */
const INTERN_BYTES = 8 << 20;

/** FNV-1a, 32 bits: cheap and stable, for cut points and keys (not for secrecy). */
function fnv32(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

/** A source list cut into chunks: [start, end) of each and its SrcIPs JSON. */
interface Cuts {
  readonly starts: readonly number[];
  readonly json: readonly string[];
}

export class FilterChunker {
  /** Source lists the policy engine shares between rules and nodes (frozen): cut once. */
  private readonly cutsOf = new WeakMap<readonly string[], Cuts>();
  private readonly frozenJson = new WeakMap<object, string>();
  /**
   * Chunk sources seen lately, by their JSON: a new source list (one member joined) gives its
   * unchanged chunks the strings of the old one, so sessions compare them by reference.
   */
  private interned = new Map<string, string>();
  private internedBytes = 0;

  /** The filter's chunks, in rule order (keys are unique). */
  chunks(rules: readonly FilterRule[]): FilterChunk[] {
    const out: FilterChunk[] = [];
    const seen = new Map<string, number>();
    for (const rule of rules) {
      const rest = this.restJson(rule);
      const ruleKey = unique(fnv32(rest).toString(36));
      const src = rule.SrcIPs;
      if (src.length <= SPLIT_ABOVE) {
        out.push({ key: ruleKey, src: this.intern(this.json(src)), rest });
        continue;
      }
      const cuts = this.cut(src);
      for (let c = 0; c < cuts.starts.length; c++) {
        const key = unique(`${ruleKey}:${src[cuts.starts[c]]}`);
        out.push({ key, src: cuts.json[c], rest });
      }
    }
    return out;

    // Two rules alike but for their sources (or a hash collision) are numbered in rule order.
    function unique(key: string): string {
      const n = seen.get(key) ?? 0;
      seen.set(key, n + 1);
      return n === 0 ? key : `${key}.${n}`;
    }
  }

  /** The rule's members other than SrcIPs, each preceded by a comma, in its own order. */
  private restJson(rule: FilterRule): string {
    let out = "";
    for (const [k, v] of Object.entries(rule)) {
      if (k === "SrcIPs" || v === undefined) continue;
      out += `,${JSON.stringify(k)}:${this.json(v)}`;
    }
    return out;
  }

  private json(v: unknown): string {
    if (typeof v !== "object" || v === null || !Object.isFrozen(v)) return JSON.stringify(v);
    let json = this.frozenJson.get(v);
    if (json === undefined) {
      json = JSON.stringify(v);
      this.frozenJson.set(v, json);
    }
    return json;
  }

  private intern(json: string): string {
    const hit = this.interned.get(json);
    if (hit !== undefined) return hit;
    // Bounded: forgetting only makes the next comparison of equal chunks read their text.
    if (this.internedBytes + json.length > INTERN_BYTES) {
      this.interned = new Map();
      this.internedBytes = 0;
    }
    this.interned.set(json, json);
    this.internedBytes += json.length;
    return json;
  }

  private cut(src: readonly string[]): Cuts {
    const frozen = Object.isFrozen(src);
    const hit = frozen ? this.cutsOf.get(src) : undefined;
    if (hit) return hit;
    const starts: number[] = [];
    const json: string[] = [];
    let start = 0;
    for (let i = 0; i < src.length; i++) {
      if (i + 1 < src.length) {
        const h = fnv32(src[i]);
        const size = i + 1 - start;
        const cut = (h & CUT_MASK) === 0 || (size >= LONG_ENTRIES && (h & LONG_CUT_MASK) === 0) ||
          size >= MAX_ENTRIES;
        if (!cut) continue;
      }
      starts.push(start);
      json.push(this.intern(JSON.stringify(src.slice(start, i + 1))));
      start = i + 1;
    }
    const cuts = { starts, json };
    if (frozen) this.cutsOf.set(src, cuts);
    return cuts;
  }
}
