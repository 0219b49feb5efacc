/**
 * Address sets for the policy engine: sorted, merged ranges per address family.
 *
 * Filter rules speak in sets of addresses (SrcIPs, DstPorts IPs, CapGrant Dsts). A set is kept
 * as closed ranges [lo, hi] of bigints, separately for IPv4 and IPv6, always sorted and merged,
 * so equality of two sets is equality of their range lists.
 */

import { type Family, parseIP, parsePrefix, type Prefix } from "../net/ip.ts";

export interface IPRange {
  family: Family;
  lo: bigint;
  hi: bigint;
}

const V4_MAX = (1n << 32n) - 1n;
const V6_MAX = (1n << 128n) - 1n;

export function familyMax(family: Family): bigint {
  return family === 4 ? V4_MAX : V6_MAX;
}

export function prefixRange(p: Prefix): IPRange {
  const size = BigInt((p.family === 4 ? 32 : 128) - p.bits);
  return { family: p.family, lo: p.addr, hi: p.addr | ((1n << size) - 1n) };
}

/** Parses "ip", "ip/bits" or "lo-hi"; "*" is every address of both families. */
export function parseRangeText(text: string): IPRange[] | null {
  if (text === "*") {
    return [{ family: 4, lo: 0n, hi: V4_MAX }, { family: 6, lo: 0n, hi: V6_MAX }];
  }
  const dash = text.indexOf("-");
  if (dash > 0) {
    const lo = parseIP(text.slice(0, dash));
    const hi = parseIP(text.slice(dash + 1));
    if (!lo || !hi || lo.family !== hi.family || lo.value > hi.value) return null;
    return [{ family: lo.family, lo: lo.value, hi: hi.value }];
  }
  const p = parsePrefix(text);
  return p ? [prefixRange(p)] : null;
}

function normalize(ranges: { lo: bigint; hi: bigint }[]): { lo: bigint; hi: bigint }[] {
  if (ranges.length <= 1) return ranges.slice();
  const sorted = ranges.slice().sort((a, b) => (a.lo < b.lo ? -1 : a.lo > b.lo ? 1 : 0));
  const out = [{ ...sorted[0] }];
  for (let i = 1; i < sorted.length; i++) {
    const r = sorted[i];
    const last = out[out.length - 1];
    if (r.lo <= last.hi + 1n) {
      if (r.hi > last.hi) last.hi = r.hi;
    } else {
      out.push({ ...r });
    }
  }
  return out;
}

type Span = { lo: bigint; hi: bigint };

/** An immutable set of addresses. */
export class IPSet {
  static readonly EMPTY = new IPSet([], []);

  private constructor(readonly v4: readonly Span[], readonly v6: readonly Span[]) {}

  static of(ranges: Iterable<IPRange>): IPSet {
    const v4: Span[] = [];
    const v6: Span[] = [];
    for (const r of ranges) (r.family === 4 ? v4 : v6).push({ lo: r.lo, hi: r.hi });
    return new IPSet(normalize(v4), normalize(v6));
  }

  /** The union of many sets, normalised once. */
  static unionAll(sets: readonly IPSet[]): IPSet {
    const nonEmpty = sets.filter((s) => !s.isEmpty());
    if (nonEmpty.length === 0) return IPSet.EMPTY;
    if (nonEmpty.length === 1) return nonEmpty[0];
    return new IPSet(
      normalize(nonEmpty.flatMap((s) => s.v4)),
      normalize(nonEmpty.flatMap((s) => s.v6)),
    );
  }

  static fromStrings(texts: Iterable<string>): IPSet {
    const all: IPRange[] = [];
    for (const t of texts) {
      const r = parseRangeText(t);
      if (r) all.push(...r);
    }
    return IPSet.of(all);
  }

  isEmpty(): boolean {
    return this.v4.length === 0 && this.v6.length === 0;
  }

  ranges(): IPRange[] {
    return [
      ...this.v4.map((s) => ({ family: 4 as const, lo: s.lo, hi: s.hi })),
      ...this.v6.map((s) => ({ family: 6 as const, lo: s.lo, hi: s.hi })),
    ];
  }

  union(other: IPSet): IPSet {
    if (other.isEmpty()) return this;
    if (this.isEmpty()) return other;
    return new IPSet(normalize([...this.v4, ...other.v4]), normalize([...this.v6, ...other.v6]));
  }

  subtract(other: IPSet): IPSet {
    return new IPSet(subtractSpans(this.v4, other.v4), subtractSpans(this.v6, other.v6));
  }

  intersect(other: IPSet): IPSet {
    if (this.isEmpty() || other.isEmpty()) return IPSet.EMPTY;
    return this.subtract(this.subtract(other));
  }

  contains(family: Family, value: bigint): boolean {
    return findSpan(family === 4 ? this.v4 : this.v6, value) >= 0;
  }

  /** True when some address of [lo, hi] is in the set. */
  overlaps(r: IPRange): boolean {
    const spans = r.family === 4 ? this.v4 : this.v6;
    // First span whose hi >= r.lo.
    let a = 0, b = spans.length;
    while (a < b) {
      const m = (a + b) >> 1;
      if (spans[m].hi < r.lo) a = m + 1;
      else b = m;
    }
    return a < spans.length && spans[a].lo <= r.hi;
  }

  /** True when every address of [lo, hi] is in the set. */
  covers(r: IPRange): boolean {
    const spans = r.family === 4 ? this.v4 : this.v6;
    const i = findSpan(spans, r.lo);
    return i >= 0 && spans[i].hi >= r.hi;
  }

  isSubsetOf(other: IPSet): boolean {
    return this.ranges().every((r) => other.covers(r));
  }

  equals(other: IPSet): boolean {
    return spansEqual(this.v4, other.v4) && spansEqual(this.v6, other.v6);
  }

  /** Canonical text: single addresses, CIDRs when a range is exactly one, else "lo-hi". */
  toStrings(format: AddressFormat = formatAddr): string[] {
    return this.ranges().map((r) => formatRange(r, format));
  }

  /** The set as CIDR prefixes (a range that is not one prefix becomes several). */
  toPrefixStrings(): string[] {
    const out: string[] = [];
    for (const r of this.ranges()) out.push(...rangeToPrefixes(r));
    return out;
  }

  key(): string {
    return this.toStrings().join(",");
  }
}

function spansEqual(a: readonly Span[], b: readonly Span[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i].lo !== b[i].lo || a[i].hi !== b[i].hi) return false;
  return true;
}

function findSpan(spans: readonly Span[], v: bigint): number {
  let a = 0, b = spans.length - 1;
  while (a <= b) {
    const m = (a + b) >> 1;
    if (spans[m].hi < v) a = m + 1;
    else if (spans[m].lo > v) b = m - 1;
    else return m;
  }
  return -1;
}

function subtractSpans(a: readonly Span[], b: readonly Span[]): Span[] {
  const out: Span[] = [];
  let j = 0;
  for (const s of a) {
    let lo = s.lo;
    const hi = s.hi;
    while (j < b.length && b[j].hi < lo) j++;
    let k = j;
    while (k < b.length && b[k].lo <= hi && lo <= hi) {
      if (b[k].lo > lo) out.push({ lo, hi: b[k].lo - 1n });
      lo = b[k].hi + 1n;
      k++;
    }
    if (lo <= hi) out.push({ lo, hi });
  }
  return out;
}

/** The prefix length when [lo, hi] is exactly one CIDR block, else -1. */
function exactPrefixBits(r: IPRange): number {
  const size = r.hi - r.lo + 1n;
  if ((size & (size - 1n)) !== 0n) return -1;
  if ((r.lo & (size - 1n)) !== 0n) return -1;
  const hostBits = size.toString(2).length - 1;
  return (r.family === 4 ? 32 : 128) - hostBits;
}

/** Formats an address (RFC 5952 for IPv6). */
export function formatAddr(family: Family, value: bigint): string {
  if (family === 4) {
    const v = Number(value);
    return `${(v >>> 24) & 255}.${(v >>> 16) & 255}.${(v >>> 8) & 255}.${v & 255}`;
  }
  return formatV6(value);
}

/**
 * An address formatter that remembers IPv6 results (tailnet addresses repeat in every rule,
 * and IPv6 formatting is bigint work). One per engine; the memory is bounded.
 */
export class AddressNames {
  private readonly v6 = new Map<number, { value: bigint; text: string }>();

  readonly format = (family: Family, value: bigint): string => {
    if (family === 4) return formatAddr(4, value);
    const key = Number(value & 0xfffffffffffffn);
    const hit = this.v6.get(key);
    if (hit !== undefined && hit.value === value) return hit.text;
    const text = formatV6(value);
    if (this.v6.size >= 100_000) this.v6.clear();
    this.v6.set(key, { value, text });
    return text;
  };
}

export type AddressFormat = (family: Family, value: bigint) => string;

function formatV6(value: bigint): string {
  const groups: string[] = [];
  for (let shift = 96n; shift >= 0n; shift -= 32n) {
    const w = Number((value >> shift) & 0xffffffffn);
    groups.push((w >>> 16).toString(16), (w & 0xffff).toString(16));
  }
  let best = -1, bestLen = 0;
  for (let i = 0; i < 8;) {
    if (groups[i] !== "0") {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === "0") j++;
    if (j - i > bestLen && j - i >= 2) [best, bestLen] = [i, j - i];
    i = j;
  }
  if (best < 0) return groups.join(":");
  return `${groups.slice(0, best).join(":")}::${groups.slice(best + bestLen).join(":")}`;
}

export function formatRange(r: IPRange, format: AddressFormat = formatAddr): string {
  if (r.lo === r.hi) return format(r.family, r.lo);
  const bits = exactPrefixBits(r);
  if (bits >= 0) return `${format(r.family, r.lo)}/${bits}`;
  return `${format(r.family, r.lo)}-${format(r.family, r.hi)}`;
}

export function rangeToPrefixes(r: IPRange): string[] {
  const out: string[] = [];
  const total = r.family === 4 ? 32 : 128;
  let lo = r.lo;
  while (lo <= r.hi) {
    // Largest block aligned at lo that fits in [lo, hi].
    let bits = total;
    while (bits > 0) {
      const size = 1n << BigInt(total - bits + 1);
      if ((lo & (size - 1n)) !== 0n || lo + size - 1n > r.hi) break;
      bits--;
    }
    out.push(`${formatAddr(r.family, lo)}/${bits}`);
    lo += 1n << BigInt(total - bits);
  }
  return out;
}

const CGNAT = parsePrefix("100.64.0.0/10")!;
const CHROME_OS_VM = parsePrefix("100.115.92.0/23")!;
const TAILSCALE_ULA = parsePrefix("fd7a:115c:a1e0::/48")!;

/** What "*" means as a source: every tailnet address (CGNAT without the ChromeOS range, the ULA). */
export const TAILNET_ADDRESSES: IPSet = IPSet.of([prefixRange(CGNAT), prefixRange(TAILSCALE_ULA)])
  .subtract(IPSet.of([prefixRange(CHROME_OS_VM)]));

/**
 * autogroup:internet as the hosted service spells it: all IPv4 except the private ranges, CGNAT
 * and link-local; IPv6 global unicast 2000::/3.
 */
export const INTERNET: IPSet = (() => {
  const excluded4 = [
    "10.0.0.0/8",
    "100.64.0.0/10",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.168.0.0/16",
  ];
  const v4 = IPSet.of([{ family: 4, lo: 0n, hi: V4_MAX }]);
  const v6 = IPSet.of([prefixRange(parsePrefix("2000::/3")!)]);
  return v4.subtract(IPSet.of(excluded4.map((p) => prefixRange(parsePrefix(p)!)))).union(v6);
})();

export function isExitRoute(p: Prefix): boolean {
  return p.bits === 0;
}
