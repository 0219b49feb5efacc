/**
 * A node's packet filter: the tailnet-wide rules reduced to the destinations this node serves
 * (its own addresses, its approved subnet routes, the internet when it is an exit node),
 * merged the way the hosted service merges them (rules with the same SrcIPs and IPProto
 * share one entry, at the position of the first).
 */

import type { Sel, Template } from "./compile.ts";
import { mergeKeyOf, type Resolver } from "./context.ts";
import {
  formatRange,
  INTERNET,
  type IPRange,
  IPSet,
  rangeToPrefixes,
  TAILNET_ADDRESSES,
} from "./ipset.ts";
import { nodeInSet, type NodeRec } from "./tailnet.ts";
import type { CapGrant, FilterRule, NetPortRange, PortRange } from "./types.ts";

interface Piece {
  /** Position in compile order. */
  seq: number;
  /** Merge key for port rules; undefined for cap rules (never merged). */
  key?: string;
  rule: FilterRule;
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
  sel: Sel,
  ports: readonly PortRange[],
  out: NetPortRange[],
): void {
  switch (sel.t) {
    case "all":
      portEntries("*", ports, out);
      return;
    case "key": {
      if (n.keys.includes(sel.key)) { for (const ip of n.ipStrings) portEntries(ip, ports, out); }
      if (n.subnetRoutes.length > 0) {
        // Other members' addresses inside this node's routes (routes overlapping the tailnet).
        for (const r of rs.keyAddresses(sel.key).ranges()) {
          if (!overlapsRoutes(n, r)) continue;
          if (
            n.ips.some((ip) => ip.family === r.family && ip.value === r.lo) &&
            n.keys.includes(sel.key)
          ) continue;
          portEntries(formatRange(r), ports, out);
        }
      }
      return;
    }
    case "addr":
      for (const r of sel.set.ranges()) {
        if (
          nodeInSet(n, IPSet.of([r])) || overlapsRoutes(n, r) ||
          (n.isExit && rangeWithin(r, INTERNET))
        ) {
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
function capDsts(rs: Resolver, n: NodeRec, sel: Sel): string[] {
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
  for (const ip of n.ips) if (set.contains(ip.family, ip.value)) out.add(hostPrefix(ip));
  if (n.subnetRoutes.length > 0) {
    for (const r of set.ranges()) {
      for (const p of rangeToPrefixes(r)) {
        const pr = IPSet.fromStrings([p]).ranges()[0];
        if (overlapsRoutes(n, pr)) out.add(p);
      }
    }
  }
  return [...out].sort();
}

function capGrants(rs: Resolver, n: NodeRec, t: Template): CapGrant[] {
  const out: CapGrant[] = [];
  for (const d of t.dst) {
    const dsts = capDsts(rs, n, d.sel);
    if (dsts.length > 0) out.push({ Dsts: dsts, CapMap: { ...t.capMap! } });
  }
  return out;
}

function portRule(src: string[], dst: NetPortRange[], protos?: number[]): FilterRule {
  const r: FilterRule = { SrcIPs: src, DstPorts: dst };
  if (protos) r.IPProto = [...protos];
  return r;
}

/** Pieces of tailnet-wide templates that concern node n. */
function globalPieces(rs: Resolver, n: NodeRec, i: number, out: Piece[]): void {
  const t = rs.compiled.templates[i];
  if (t.kind === "ip") {
    const dst: NetPortRange[] = [];
    for (const d of t.dst) dstEntries(rs, n, d.sel, d.ports, dst);
    if (dst.length === 0) return;
    const src = rs.srcStrings(i);
    if (src.length === 0) return;
    out.push({ seq: t.seq, key: rs.mergeKey(i), rule: portRule([...src], dst, t.protos) });
  } else {
    const grants = capGrants(rs, n, t);
    if (grants.length === 0) return;
    out.push({ seq: t.seq, rule: { SrcIPs: [...rs.srcStrings(i)], CapGrant: grants } });
  }
}

/** autogroup:self: sources narrowed to the node owner's own untagged devices. */
function selfPieces(rs: Resolver, n: NodeRec, t: Template, out: Piece[]): void {
  if (n.tagged || n.userId === undefined) return;
  const tn = rs.tailnet;
  const same = tn.membersOf(`u:${n.userId}`);
  const srcNodes: NodeRec[] = [];
  const sameNodes: NodeRec[] = [];
  for (const slot of same.bits()) {
    const m = tn.bySlot(slot);
    sameNodes.push(m);
    if (rs.nodeMatches(m, t.src)) srcNodes.push(m);
  }
  if (srcNodes.length === 0) return;
  const addrs = (list: NodeRec[]) => IPSet.of(list.flatMap((m) => m.ips.map(ipRange))).toStrings();
  const own = n.ips.map(hostPrefix);
  if (t.kind === "ip") {
    const dst: NetPortRange[] = [];
    for (const ip of n.ipStrings) portEntries(ip, t.dst[0]?.ports ?? [], dst);
    if (dst.length === 0) return;
    const src = addrs(srcNodes);
    out.push({ seq: t.seq, key: mergeKeyOf(src, t.protos), rule: portRule(src, dst, t.protos) });
  } else if (t.kind === "cap") {
    if (own.length === 0) return;
    out.push({
      seq: t.seq,
      rule: { SrcIPs: addrs(srcNodes), CapGrant: [{ Dsts: own, CapMap: { ...t.capMap! } }] },
    });
  } else {
    if (!srcNodes.includes(n) || own.length === 0) return;
    out.push({
      seq: t.seq,
      rule: { SrcIPs: addrs(sameNodes), CapGrant: [{ Dsts: own, CapMap: { ...t.capMap! } }] },
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
  out.push({ seq: t.seq, key: rs.mergeKey(i), rule: portRule([...src], dst, t.protos) });
}

/** Candidate templates for node n as a destination (index lookups, not a scan of every rule). */
export function candidateTemplates(rs: Resolver, n: NodeRec): number[] {
  if (n.subnetRoutes.length > 0 || n.isExit) return rs.compiled.templates.map((_, i) => i);
  const seen = new Set<number>();
  for (const k of n.keys) for (const i of rs.dstTemplatesWithKey(k)) seen.add(i);
  for (const i of rs.generalTemplates) seen.add(i);
  return [...seen].sort((a, b) => a - b);
}

export function filterFor(rs: Resolver, n: NodeRec): FilterRule[] {
  const pieces: Piece[] = [];
  for (const i of candidateTemplates(rs, n)) {
    const t = rs.compiled.templates[i];
    if (t.self) selfPieces(rs, n, t, pieces);
    else if (t.via) viaPieces(rs, n, i, pieces);
    else globalPieces(rs, n, i, pieces);
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
