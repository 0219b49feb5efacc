/**
 * IPv4/IPv6 addresses and prefixes as bigints: enough for allocation and validation without a
 * dependency. Addresses are plain values; no object per address on hot paths.
 */

export type Family = 4 | 6;

export interface IPAddr {
  family: Family;
  value: bigint;
}

export interface Prefix {
  family: Family;
  /** The network address (host bits cleared). */
  addr: bigint;
  bits: number;
}

const V4_MAX = (1n << 32n) - 1n;
const V6_MAX = (1n << 128n) - 1n;

export function familyBits(family: Family): number {
  return family === 4 ? 32 : 128;
}

function parseV4(text: string): bigint | null {
  const parts = text.split(".");
  if (parts.length !== 4) return null;
  let v = 0n;
  for (const p of parts) {
    if (!/^\d{1,3}$/.test(p) || (p.length > 1 && p[0] === "0")) return null;
    const n = Number(p);
    if (n > 255) return null;
    v = (v << 8n) | BigInt(n);
  }
  return v;
}

function parseV6(text: string): bigint | null {
  if (text.includes("%")) return null;
  let head = text;
  let tailV4: bigint | null = null;
  const lastColon = text.lastIndexOf(":");
  if (text.includes(".")) {
    tailV4 = parseV4(text.slice(lastColon + 1));
    if (tailV4 === null) return null;
    head = text.slice(0, lastColon + 1) + "0:0";
  }
  const halves = head.split("::");
  if (halves.length > 2) return null;
  const left = halves[0] === "" ? [] : halves[0].split(":");
  const right = halves.length === 2 ? (halves[1] === "" ? [] : halves[1].split(":")) : [];
  const groups = halves.length === 2
    ? [...left, ...Array(8 - left.length - right.length).fill("0"), ...right]
    : left;
  if (groups.length !== 8 || (halves.length === 2 && left.length + right.length > 7)) return null;
  let v = 0n;
  for (const g of groups) {
    if (!/^[0-9a-fA-F]{1,4}$/.test(g)) return null;
    v = (v << 16n) | BigInt(parseInt(g, 16));
  }
  if (tailV4 !== null) v = (v & ~0xffffffffn) | tailV4;
  return v;
}

/** Parses an address; returns null when `text` is not one. */
export function parseIP(text: string): IPAddr | null {
  if (text.includes(":")) {
    const v = parseV6(text);
    return v === null ? null : { family: 6, value: v };
  }
  const v = parseV4(text);
  return v === null ? null : { family: 4, value: v };
}

export function formatIP(ip: IPAddr): string {
  if (ip.family === 4) {
    const v = ip.value;
    return [24n, 16n, 8n, 0n].map((s) => String((v >> s) & 0xffn)).join(".");
  }
  const groups: number[] = [];
  for (let i = 7; i >= 0; i--) groups.push(Number((ip.value >> BigInt(i * 16)) & 0xffffn));
  // Longest run of zero groups (length ≥ 2) becomes "::", as RFC 5952 says.
  let best = -1, bestLen = 0;
  for (let i = 0; i < 8;) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen && j - i >= 2) [best, bestLen] = [i, j - i];
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (best < 0) return hex.join(":");
  return `${hex.slice(0, best).join(":")}::${hex.slice(best + bestLen).join(":")}`;
}

/** Parses "a.b.c.d/n" or "x::/n"; a bare address is a single-host prefix. */
export function parsePrefix(text: string): Prefix | null {
  const slash = text.indexOf("/");
  const ip = parseIP(slash < 0 ? text : text.slice(0, slash));
  if (!ip) return null;
  const max = familyBits(ip.family);
  let bits = max;
  if (slash >= 0) {
    const b = text.slice(slash + 1);
    if (!/^\d{1,3}$/.test(b)) return null;
    bits = Number(b);
    if (bits > max) return null;
  }
  return { family: ip.family, addr: ip.value & prefixMask(ip.family, bits), bits };
}

export function prefixMask(family: Family, bits: number): bigint {
  const total = familyBits(family);
  const all = family === 4 ? V4_MAX : V6_MAX;
  return (all >> BigInt(total - bits)) << BigInt(total - bits);
}

export function formatPrefix(p: Prefix): string {
  return `${formatIP({ family: p.family, value: p.addr })}/${p.bits}`;
}

export function prefixContains(p: Prefix, ip: IPAddr): boolean {
  return p.family === ip.family && (ip.value & prefixMask(p.family, p.bits)) === p.addr;
}

/** The last address of the prefix. */
export function prefixLast(p: Prefix): bigint {
  return p.addr | (~prefixMask(p.family, p.bits) & (p.family === 4 ? V4_MAX : V6_MAX));
}

/** True when `inner` lies entirely inside `outer`. */
export function prefixWithin(inner: Prefix, outer: Prefix): boolean {
  return inner.family === outer.family && inner.bits >= outer.bits &&
    prefixContains(outer, { family: inner.family, value: inner.addr });
}
