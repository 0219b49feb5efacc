/**
 * A node's packet filter: the tailnet-wide rules reduced to the destinations this node serves
 * (its own addresses, its approved subnet routes, the internet when it is an exit node),
 * merged the way the hosted service merges them (rules with the same SrcIPs and IPProto
 * share one entry, at the position of the first).
 */

import type { Sel, Template } from "./compile.ts";
import type { Resolver } from "./context.ts";
import {
  formatRange,
  INTERNET,
  type IPRange,
  IPSet,
  rangeToPrefixes,
  TAILNET_ADDRESSES,
} from "./ipset.ts";
import type { NodeRec } from "./tailnet.ts";
import type { CapGrant, FilterRule, NetPortRange, PortRange } from "./types.ts";

interface Piece {
  /** Position in compile order. */
  seq: number;
  /** Merge key for port rules; undefined for cap rules (never merged). */
  key?: string;
  rule: FilterRule;
}

/**
 * The node's own addresses as they appear in its filter: DstPorts IPs and CapGrant host
 * prefixes. Class recipes use placeholders here and substitute each member's addresses.
 */
export interface Own {
  strings: readonly string[];
  prefixes: readonly string[];
}

export function ownOf(n: NodeRec): Own {
  return { strings: n.ipStrings, prefixes: n.ips.map(hostPrefix) };
}

function ipRange(ip: { family: 4 | 6; value: bigint }): IPRange {
  return { family: ip.family, lo: ip.value, hi: ip.value };
}

function hostPrefix(ip: { family: 4 | 6; value: bigint }): string {
  return `${formatRange(ipRange(ip))}/${ip.family === 4 ? 32 : 128}`;
}

function overlapsRoutes(n: NodeRec, r: IPRange): boolean {
  return n.subnetRoutes.some((x) => x.family === r.family && x.lo <= r.hi && r.lo <= x.hi);
}

function routeSet(n: NodeRec): IPSet {
  return IPSet.of(n.subnetRoutes);
}

function ownSet(n: NodeRec): IPSet {
  return IPSet.of(n.ips.map(ipRange));
}

function nodeInRange(n: NodeRec, r: IPRange): boolean {
  return n.ips.some((ip) => ip.family === r.family && r.lo <= ip.value && ip.value <= r.hi);
}

function rangeWithin(r: IPRange, set: IPSet): boolean {
  return set.covers(r);
}

function portEntries(ip: string, ports: readonly PortRange[], out: NetPortRange[]): void {
  for (const p of ports) out.push({ IP: ip, Ports: { First: p.first, Last: p.last } });
}

/** The DstPorts entries of one destination selector that concern node n. */
function dstEntries(
  rs: Resolver,
  n: NodeRec,
  own: Own,
  sel: Sel,
  ports: readonly PortRange[],
  out: NetPortRange[],
): void {
  switch (sel.t) {
    case "all":
      portEntries("*", ports, out);
      return;
    case "key": {
      if (n.keys.includes(sel.key)) { for (const ip of own.strings) portEntries(ip, ports, out); }
      if (n.subnetRoutes.length > 0) {
        // Other members' addresses inside this node's routes (routes overlapping the tailnet).
        let inside = rs.keyAddresses(sel.key).intersect(routeSet(n));
        if (n.keys.includes(sel.key)) inside = inside.subtract(ownSet(n));
        for (const r of inside.ranges()) portEntries(formatRange(r), ports, out);
      }
      return;
    }
    case "addr":
      for (const r of sel.set.ranges()) {
        if (nodeInRange(n, r) || overlapsRoutes(n, r) || (n.isExit && rangeWithin(r, INTERNET))) {
          portEntries(formatRange(r), ports, out);
        }
      }
      return;
    case "internet":
      for (const r of INTERNET.ranges()) {
        if (n.isExit || overlapsRoutes(n, r)) portEntries(formatRange(r), ports, out);
      }
      return;
    default:
      return;
  }
}

/** CapGrant Dsts of one destination selector that concern node n (narrowed to its addresses). */
function capDsts(rs: Resolver, n: NodeRec, own: Own, sel: Sel): string[] {
  let set: IPSet;
  switch (sel.t) {
    case "all":
      set = TAILNET_ADDRESSES;
      break;
    case "key":
      set = rs.keyAddresses(sel.key);
      break;
    case "addr":
      set = sel.set;
      break;
    case "internet":
      set = INTERNET;
      break;
    default:
      return [];
  }
  const out = new Set<string>();
  n.ips.forEach((ip, k) => {
    if (set.contains(ip.family, ip.value)) out.add(own.prefixes[k]);
  });
  if (n.subnetRoutes.length > 0) {
    if (sel.t === "key") {
      // Member addresses: only the part inside the routes, so other members do not matter.
      for (const p of set.intersect(routeSet(n)).toPrefixStrings()) out.add(p);
    } else {
      for (const r of set.ranges()) {
        for (const p of rangeToPrefixes(r)) {
          const pr = IPSet.fromStrings([p]).ranges()[0];
          if (overlapsRoutes(n, pr)) out.add(p);
        }
      }
    }
  }
  return [...out].sort();
}

function capGrants(rs: Resolver, n: NodeRec, own: Own, t: Template): CapGrant[] {
  const out: CapGrant[] = [];
  for (const d of t.dst) {
    const dsts = capDsts(rs, n, own, d.sel);
    if (dsts.length > 0) out.push({ Dsts: dsts, CapMap: { ...t.capMap! } });
  }
  return out;
}

/** SrcIPs arrays are shared between nodes' filters: treat filter output as read-only. */
function portRule(src: string[], dst: NetPortRange[], protos?: number[]): FilterRule {
  const r: FilterRule = { SrcIPs: src, DstPorts: dst };
  if (protos) r.IPProto = [...protos];
  return r;
}

/** Pieces of tailnet-wide templates that concern node n. */
function globalPieces(rs: Resolver, n: NodeRec, own: Own, i: number, out: Piece[]): void {
  const t = rs.compiled.templates[i];
  if (t.kind === "ip") {
    const dst: NetPortRange[] = [];
    for (const d of t.dst) dstEntries(rs, n, own, d.sel, d.ports, dst);
    if (dst.length === 0) return;
    const src = rs.srcStrings(i);
    if (src.length === 0) return;
    out.push({ seq: t.seq, key: rs.mergeKey(i), rule: portRule(src, dst, t.protos) });
  } else {
    const grants = capGrants(rs, n, own, t);
    if (grants.length === 0) return;
    out.push({ seq: t.seq, rule: { SrcIPs: rs.srcStrings(i), CapGrant: grants } });
  }
}

/** autogroup:self: sources narrowed to the node owner's own untagged devices. */
function selfPieces(rs: Resolver, n: NodeRec, ownAddrs: Own, i: number, out: Piece[]): void {
  if (n.tagged || n.userId === undefined) return;
  const t = rs.compiled.templates[i];
  const info = rs.selfInfo(i, n.userId);
  if (info.srcNodes.length === 0) return;
  const src = info.srcStrings as string[];
  if (t.kind === "ip") {
    const dst: NetPortRange[] = [];
    for (const ip of ownAddrs.strings) portEntries(ip, t.dst[0]?.ports ?? [], dst);
    if (dst.length === 0) return;
    out.push({ seq: t.seq, key: info.mergeKey, rule: portRule(src, dst, t.protos) });
    return;
  }
  const own = ownAddrs.prefixes as string[];
  if (own.length === 0) return;
  if (t.kind === "cap") {
    out.push({
      seq: t.seq,
      rule: { SrcIPs: src, CapGrant: [{ Dsts: own, CapMap: { ...t.capMap! } }] },
    });
  } else if (info.srcBits.has(n.slot)) {
    const same = info.sameStrings as string[];
    out.push({
      seq: t.seq,
      rule: { SrcIPs: same, CapGrant: [{ Dsts: own, CapMap: { ...t.capMap! } }] },
    });
  }
}

/** via: rules for routers carrying a via tag, limited to the destinations they route. */
function viaPieces(rs: Resolver, n: NodeRec, i: number, out: Piece[]): void {
  const t = rs.compiled.templates[i];
  if (t.kind !== "ip" || !t.via!.some((tag) => n.tags.includes(tag))) return;
  const dst: NetPortRange[] = [];
  for (const d of t.dst) {
    if (d.sel.t === "internet") {
      if (n.isExit) {
        for (const r of INTERNET.ranges()) portEntries(formatRange(r), d.ports, dst);
      }
      continue;
    }
    if (d.sel.t !== "addr") continue;
    for (const r of d.sel.set.ranges()) {
      if (overlapsRoutes(n, r)) portEntries(formatRange(r), d.ports, dst);
    }
  }
  if (dst.length === 0) return;
  const src = rs.srcStrings(i);
  if (src.length === 0) return;
  out.push({ seq: t.seq, key: rs.mergeKey(i), rule: portRule(src, dst, t.protos) });
}

/** Candidate templates for node n as a destination (index lookups, not a scan of every rule). */
export function candidateTemplates(rs: Resolver, n: NodeRec): Iterable<number> {
  if (n.subnetRoutes.length > 0 || n.isExit) return rs.compiled.templates.keys();
  const seen = new Set<number>(rs.addressDst);
  for (const k of n.keys) for (const i of rs.dstTemplatesWithKey(k)) seen.add(i);
  return seen;
}

/** The node's filter, computed from scratch. */
export function computeFilter(rs: Resolver, n: NodeRec, own: Own = ownOf(n)): FilterRule[] {
  const pieces: Piece[] = [];
  for (const i of candidateTemplates(rs, n)) {
    const t = rs.compiled.templates[i];
    if (t.self) selfPieces(rs, n, own, i, pieces);
    else if (t.via) viaPieces(rs, n, i, pieces);
    else globalPieces(rs, n, own, i, pieces);
  }
  if (pieces.length === 0) return [];

  // Merge port rules by key at the first position the key has anywhere in the tailnet.
  const first = rs.firstSeqByKey();
  const groups = new Map<string, { pos: number; rule: FilterRule }>();
  const ordered: { pos: number; rule: FilterRule }[] = [];
  pieces.sort((a, b) => a.seq - b.seq);
  for (const p of pieces) {
    if (p.key === undefined) {
      ordered.push({ pos: p.seq, rule: p.rule });
      continue;
    }
    const g = groups.get(p.key);
    if (g) {
      g.rule.DstPorts!.push(...p.rule.DstPorts!);
      continue;
    }
    const entry = { pos: Math.min(first.get(p.key) ?? Infinity, p.seq), rule: p.rule };
    groups.set(p.key, entry);
    ordered.push(entry);
  }
  ordered.sort((a, b) => a.pos - b.pos);
  return ordered.map((o) => o.rule);
}

const MARK = "\u0000own";

/**
 * Filters per class of equivalent nodes. Nodes holding the same membership keys, with the
 * same address families and the same memberships of each of their addresses (in the tailnet
 * ranges, in the internet, in each address rule), get filters that differ only in their own
 * addresses: the class keeps one recipe with placeholders and fills them in. Routers and exit
 * nodes are computed on their own.
 *
 * Membership is per address, not per node: a CapGrant lists only the node's addresses inside
 * its destination ("*" is the tailnet ranges), so a node imported with an address outside
 * them gets the grant on its IPv6 address alone, and must not share a recipe with a node that
 * gets it on both.
 */
export class FilterRecipes {
  private readonly recipes = new Map<string, FilterRule[]>();

  clear(): void {
    this.recipes.clear();
  }

  /** The node's class, or null for routers and exit nodes (computed on their own). */
  signature(rs: Resolver, n: NodeRec): string | null {
    if (n.subnetRoutes.length > 0 || n.isExit) return null;
    let sig = n.keys.join("\u0001") + "|";
    for (const ip of n.ips) {
      sig += ip.family + (TAILNET_ADDRESSES.contains(ip.family, ip.value) ? "t" : "-") +
        (INTERNET.contains(ip.family, ip.value) ? "i" : "-");
    }
    for (const i of rs.addressDst) {
      for (const d of rs.compiled.templates[i].dst) {
        if (d.sel.t !== "addr") continue;
        sig += "|";
        for (const ip of n.ips) sig += d.sel.set.contains(ip.family, ip.value) ? "1" : "0";
      }
    }
    return sig;
  }

  /** Drops a class's recipe (one of its members' filters changed). */
  forget(sig: string | null): void {
    if (sig !== null) this.recipes.delete(sig);
  }

  filterFor(rs: Resolver, n: NodeRec, sig: string | null = this.signature(rs, n)): FilterRule[] {
    if (sig === null) return computeFilter(rs, n);
    let recipe = this.recipes.get(sig);
    if (!recipe) {
      const marks: Own = {
        strings: n.ips.map((_, k) => `${MARK}${k}`),
        prefixes: n.ips.map((_, k) => `${MARK}${k}/`),
      };
      recipe = computeFilter(rs, n, marks);
      this.recipes.set(sig, recipe);
    }
    return instantiate(recipe, ownOf(n));
  }
}

function fill(text: string, own: Own): string {
  if (!text.startsWith(MARK)) return text;
  const k = Number(text.slice(MARK.length).replace("/", ""));
  return text.endsWith("/") ? own.prefixes[k] : own.strings[k];
}

function instantiate(recipe: readonly FilterRule[], own: Own): FilterRule[] {
  return recipe.map((r) => {
    const out: FilterRule = { SrcIPs: r.SrcIPs };
    if (r.DstPorts) {
      out.DstPorts = r.DstPorts.map((d) => ({ IP: fill(d.IP, own), Ports: { ...d.Ports } }));
    }
    if (r.IPProto) out.IPProto = [...r.IPProto];
    if (r.CapGrant) {
      out.CapGrant = r.CapGrant.map((g) => ({
        Dsts: g.Dsts.map((x) => fill(x, own)).sort(),
        CapMap: { ...g.CapMap },
      }));
    }
    return out;
  });
}
