/**
 * Who gains and who loses access when the policy changes: two engines over the same tailnet
 * (before and after) compared through what the nodes actually enforce — each destination's
 * packet filter and Tailscale SSH policy — as (source node, destination node, protocol, ports)
 * and (source node, login, action). Only destinations whose filter or SSH policy differ are
 * expanded, so an edit that touches one rule costs work for the nodes that rule reaches.
 *
 * Sources are the tailnet's nodes (addresses outside the tailnet, e.g. subnets behind a router,
 * are not people); a destination entry that is not one of the node's own addresses is reported
 * as the route it names (`via` the node).
 */
import type { PolicyEngine } from "./engine.ts";
import { IPSet, parseRangeText } from "./ipset.ts";
import { parseIP } from "../net/ip.ts";
import type { FilterRule, PolicyNode, PortRange, SSHPolicy } from "./types.ts";

/** What one source may newly reach, or no longer reach, on one destination. */
export interface AccessChange {
  src: number;
  dst: number;
  /** A route served by dst (e.g. "10.0.0.0/24"), or undefined for dst's own addresses. */
  via?: string;
  /** e.g. "tcp:22", "udp:1000-2000", "icmp", "cap:example.com/cap/x". */
  gained: string[];
  lost: string[];
}

export interface SSHChange {
  /** A node id, or a principal that is not a node (e.g. "any source"). */
  src: number | string;
  dst: number;
  /** e.g. "root", "alice (check)". */
  gained: string[];
  lost: string[];
}

export interface AccessDiff {
  changes: AccessChange[];
  ssh: SSHChange[];
  /** Destinations whose filter changed (including changes no tailnet node is a source of). */
  filtersChanged: number;
  sshChanged: number;
  /** The budget ran out: `changes` and `ssh` are a part of what changes (the counts are whole). */
  truncated: boolean;
}

export interface DiffBudget {
  /** Stop expanding once this many changes are found (a preview shows only a few). */
  maxChanges?: number;
  /** Stop expanding after this many (filter rule, source node) checks. */
  maxChecks?: number;
}

const DEFAULT_PROTOCOLS = [6, 17, 1, 58];
const PROTOCOL_NAMES: Record<number, string> = {
  1: "icmp",
  6: "tcp",
  17: "udp",
  58: "icmp",
  132: "sctp",
};
const PORTLESS = new Set([1, 58]);
const NO_SSH: SSHPolicy = { rules: [] };

type PortSets = Map<string, PortRange[]>; // protocol name → merged ranges

export function diffAccess(
  before: PolicyEngine,
  after: PolicyEngine,
  nodes: readonly PolicyNode[],
  budget: DiffBudget = {},
): AccessDiff {
  const maxChanges = budget.maxChanges ?? 2_000;
  const checks = { left: budget.maxChecks ?? 20_000_000 };
  const sources = nodes.map((n) => ({ node: n, ips: nodeIPs(n) }));
  const byIP = new Map<string, PolicyNode>();
  for (const n of nodes) for (const ip of [n.ipv4, n.ipv6]) if (ip) byIP.set(ip, n);
  const diff: AccessDiff = {
    changes: [],
    ssh: [],
    filtersChanged: 0,
    sshChanged: 0,
    truncated: false,
  };
  // Past the budget only the (cheap) per-destination comparison goes on, for the counts.
  const expand = () => {
    if (diff.changes.length + diff.ssh.length >= maxChanges || checks.left <= 0) {
      diff.truncated = true;
    }
    return !diff.truncated;
  };
  for (const dst of nodes) {
    const fb = before.node(dst.id) ? before.filterFor(dst.id) : [];
    const fa = after.node(dst.id) ? after.filterFor(dst.id) : [];
    const filterChanged = JSON.stringify(fb) !== JSON.stringify(fa);
    if (filterChanged) diff.filtersChanged++;
    if (filterChanged && expand()) {
      const was = reach(fb, dst, sources, checks);
      const now = reach(fa, dst, sources, checks);
      for (const key of new Set([...was.keys(), ...now.keys()])) {
        const [src, via] = splitKey(key);
        const gained = subtractAll(now.get(key), was.get(key));
        const lost = subtractAll(was.get(key), now.get(key));
        if (gained.length > 0 || lost.length > 0) {
          diff.changes.push({ src, dst: dst.id, via: via || undefined, gained, lost });
        }
      }
    }
    // No SSH policy and one without rules both let nobody in.
    const sb = (before.node(dst.id) ? before.sshPolicyFor(dst.id) : null) ?? NO_SSH;
    const sa = (after.node(dst.id) ? after.sshPolicyFor(dst.id) : null) ?? NO_SSH;
    const sshChanged = JSON.stringify(sb) !== JSON.stringify(sa);
    if (sshChanged) diff.sshChanged++;
    if (sshChanged && expand()) {
      const was = sshLogins(sb, byIP);
      const now = sshLogins(sa, byIP);
      for (const src of new Set([...was.keys(), ...now.keys()])) {
        const w = was.get(src) ?? new Set<string>(), n = now.get(src) ?? new Set<string>();
        const gained = [...n].filter((x) => !w.has(x)).sort();
        const lost = [...w].filter((x) => !n.has(x)).sort();
        if (gained.length > 0 || lost.length > 0) {
          diff.ssh.push({ src, dst: dst.id, gained, lost });
        }
      }
    }
  }
  return diff;
}

function nodeIPs(n: PolicyNode): { family: 4 | 6; value: bigint }[] {
  const out: { family: 4 | 6; value: bigint }[] = [];
  for (const text of [n.ipv4, n.ipv6]) {
    const ip = text ? parseIP(text) : null;
    if (ip) out.push({ family: ip.family, value: ip.value });
  }
  return out;
}

function splitKey(key: string): [number, string] {
  const bar = key.indexOf("|");
  return [Number(key.slice(0, bar)), key.slice(bar + 1)];
}

/** source id|via → protocol → ports, from one destination's filter. */
function reach(
  rules: readonly FilterRule[],
  dst: PolicyNode,
  sources: readonly { node: PolicyNode; ips: { family: 4 | 6; value: bigint }[] }[],
  checks: { left: number },
): Map<string, PortSets> {
  const own = IPSet.of(nodeIPs(dst).map((ip) => ({ ...ip, lo: ip.value, hi: ip.value })));
  const out = new Map<string, PortSets>();
  for (const rule of rules) {
    const srcSet = IPSet.fromStrings(rule.SrcIPs);
    checks.left -= sources.length;
    const srcs = sources.filter((s) =>
      s.node.id !== dst.id && s.ips.some((ip) => srcSet.contains(ip.family, ip.value))
    );
    if (srcs.length === 0) continue;
    // (via, protocol name, ports) this rule opens on dst.
    const opens: [string, string, PortRange][] = [];
    for (const d of rule.DstPorts ?? []) {
      const via = targetOf(d.IP, own);
      if (via === null) continue;
      for (const proto of rule.IPProto ?? DEFAULT_PROTOCOLS) {
        const name = PROTOCOL_NAMES[proto] ?? `proto ${proto}`;
        const ports = PORTLESS.has(proto) ? { first: 0, last: 0 } : {
          first: d.Ports.First,
          last: d.Ports.Last,
        };
        opens.push([via, name, ports]);
      }
    }
    for (const g of rule.CapGrant ?? []) {
      for (const ip of g.Dsts) {
        const via = targetOf(ip, own);
        if (via === null) continue;
        for (const cap of Object.keys(g.CapMap)) {
          opens.push([via, `cap:${cap}`, { first: 0, last: 0 }]);
        }
      }
    }
    for (const s of srcs) {
      for (const [via, proto, ports] of opens) {
        const key = `${s.node.id}|${via}`;
        let sets = out.get(key);
        if (!sets) out.set(key, sets = new Map());
        sets.set(proto, mergeRanges([...(sets.get(proto) ?? []), ports]));
      }
    }
  }
  return out;
}

/** "" when the entry covers the node's own address; the route text otherwise; null for "*". */
function targetOf(ip: string, own: IPSet): string | null {
  const ranges = parseRangeText(ip);
  if (!ranges) return null;
  const set = IPSet.of(ranges);
  if (own.ranges().some((r) => set.overlaps(r))) return "";
  return ip === "*" ? null : ip;
}

function mergeRanges(ranges: PortRange[]): PortRange[] {
  const sorted = ranges.slice().sort((a, b) => a.first - b.first);
  const out: PortRange[] = [];
  for (const r of sorted) {
    const last = out[out.length - 1];
    if (last && r.first <= last.last + 1) last.last = Math.max(last.last, r.last);
    else out.push({ ...r });
  }
  return out;
}

/** Ranges of `a` not in `b`. */
function subtractRanges(a: PortRange[], b: PortRange[]): PortRange[] {
  let out = a.map((r) => ({ ...r }));
  for (const cut of b) {
    out = out.flatMap((r) => {
      if (cut.last < r.first || cut.first > r.last) return [r];
      const parts: PortRange[] = [];
      if (cut.first > r.first) parts.push({ first: r.first, last: cut.first - 1 });
      if (cut.last < r.last) parts.push({ first: cut.last + 1, last: r.last });
      return parts;
    });
  }
  return out;
}

/** What `a` allows that `b` does not, as "tcp:22"-style strings. */
function subtractAll(a: PortSets | undefined, b: PortSets | undefined): string[] {
  const out: string[] = [];
  for (const [proto, ranges] of [...(a ?? new Map<string, PortRange[]>())].sort()) {
    for (const r of subtractRanges(ranges, b?.get(proto) ?? [])) {
      out.push(formatAccess(proto, r));
    }
  }
  return out;
}

function formatAccess(proto: string, r: PortRange): string {
  if (proto === "icmp" || proto.startsWith("cap:")) return proto;
  if (r.first === 0 && r.last === 65535) return `${proto}:*`;
  return r.first === r.last ? `${proto}:${r.first}` : `${proto}:${r.first}-${r.last}`;
}

/** source → logins ("root", "alice (check)") a destination's SSH policy lets it use. */
function sshLogins(
  policy: SSHPolicy,
  byIP: ReadonlyMap<string, PolicyNode>,
): Map<number | string, Set<string>> {
  const out = new Map<number | string, Set<string>>();
  for (const rule of policy.rules) {
    if (rule.action.reject) continue;
    const how = rule.action.holdAndDelegate ? " (check)" : "";
    const logins = Object.entries(rule.sshUsers).filter(([, local]) => local !== "").map((
      [login, local],
    ) => login === "*" ? (local === "=" ? "any login" : `any login as ${local}`) : login);
    for (const p of rule.principals) {
      const src = p.any
        ? "any source"
        : p.nodeIP
        ? byIP.get(p.nodeIP)?.id ?? p.nodeIP
        : p.userLogin ?? p.node ?? "?";
      let set = out.get(src);
      if (!set) out.set(src, set = new Set());
      for (const l of logins) set.add(`${l}${how}`);
    }
  }
  return out;
}
