/**
 * The tailnet as the policy engine sees it: nodes with parsed addresses and routes, dense
 * slots for bitsets, and membership sets per key ("u:<id>", "t:<tag>", "member", "tagged",
 * "*"). Mutations keep every index current; nothing here knows about the policy.
 */

import { type IPAddr, parseIP, parsePrefix } from "../net/ip.ts";
import {
  formatAddr,
  type IPRange,
  IPSet,
  isExitRoute,
  prefixRange,
  TAILNET_ADDRESSES,
} from "./ipset.ts";
import { Bitset } from "./nodeset.ts";
import type { PolicyNode } from "./types.ts";

export interface NodeRec {
  readonly id: number;
  readonly name: string;
  readonly slot: number;
  readonly input: PolicyNode;
  /** IPv4 first, then IPv6. */
  readonly ips: readonly IPAddr[];
  readonly ipStrings: readonly string[];
  readonly tagged: boolean;
  readonly tags: readonly string[];
  readonly userId?: number;
  readonly keys: readonly string[];
  /** Approved and advertised, not exit routes. */
  readonly subnetRoutes: readonly IPRange[];
  readonly subnetRouteStrings: readonly string[];
  /** Advertised non-exit routes, approved or not (they count for peer visibility). */
  readonly advertisedSubnetRoutes: readonly IPRange[];
  /** Approved and advertised exit routes (0.0.0.0/0, ::/0). */
  readonly isExit: boolean;
}

function canonicalPrefixes(list: readonly string[]): Map<string, IPRange> {
  const out = new Map<string, IPRange>();
  for (const text of list) {
    const p = parsePrefix(text.trim());
    if (!p) continue;
    const r = prefixRange(p);
    out.set(`${p.family}|${r.lo}|${p.bits}`, r);
  }
  return out;
}

export function nodeKeys(tagged: boolean, tags: readonly string[], userId?: number): string[] {
  if (tagged) return ["*", "tagged", ...tags.map((t) => `t:${t}`)];
  return userId === undefined ? ["*", "member"] : ["*", "member", `u:${userId}`];
}

export function makeNodeRec(n: PolicyNode, slot: number): NodeRec {
  const ips: IPAddr[] = [];
  for (const text of [n.ipv4, n.ipv6]) {
    const ip = text ? parseIP(text) : null;
    if (ip) ips.push(ip);
  }
  ips.sort((a, b) => a.family - b.family);
  const tags = [...new Set(n.tags)];
  const tagged = tags.length > 0;
  const userId = tagged ? undefined : n.userId;

  const advertised = canonicalPrefixes(n.advertisedRoutes);
  const approved = canonicalPrefixes(n.approvedRoutes);
  const subnetRoutes: IPRange[] = [];
  const subnetRouteStrings: string[] = [];
  let isExit = false;
  const advertisedSubnetRoutes: IPRange[] = [];
  for (const [key, r] of advertised) {
    if (Number(key.split("|")[2]) !== 0) advertisedSubnetRoutes.push(r);
    if (!approved.has(key)) continue;
    const bits = Number(key.split("|")[2]);
    if (bits === 0 && isExitRoute({ family: r.family, addr: r.lo, bits })) {
      isExit = true;
      continue;
    }
    subnetRoutes.push(r);
    subnetRouteStrings.push(IPSet.of([r]).toStrings()[0]);
  }
  return {
    id: n.id,
    name: n.name,
    slot,
    input: n,
    ips,
    ipStrings: ips.map((ip) => formatAddr(ip.family, ip.value)),
    tagged,
    tags,
    userId,
    keys: nodeKeys(tagged, tags, userId),
    subnetRoutes,
    subnetRouteStrings,
    advertisedSubnetRoutes,
    isExit,
  };
}

/** The node's own addresses as a set. */
export function nodeIPSet(n: NodeRec): IPSet {
  return IPSet.of(n.ips.map((ip) => ({ family: ip.family, lo: ip.value, hi: ip.value })));
}

export function nodeInSet(n: NodeRec, set: IPSet): boolean {
  for (const ip of n.ips) if (set.contains(ip.family, ip.value)) return true;
  return false;
}

export function routesOverlap(n: NodeRec, set: IPSet): boolean {
  for (const r of n.subnetRoutes) if (set.overlaps(r)) return true;
  return false;
}

export class Tailnet {
  readonly nodes = new Map<number, NodeRec>();
  readonly slotToId: number[] = [];
  readonly idToSlot = new Map<number, number>();
  private readonly freeSlots: number[] = [];
  private readonly members = new Map<string, Bitset>();
  /** Node by address (as formatted). */
  readonly byAddress = new Map<string, number>();
  /** Nodes with approved subnet routes. */
  readonly routers = new Set<number>();
  /** Nodes advertising subnet routes (approved or not). */
  readonly advertisers = new Set<number>();
  readonly exits = new Set<number>();
  private routeSetCache: IPSet | null = null;
  private outsideCache: IPSet | null = null;

  membersOf(key: string): Bitset {
    let b = this.members.get(key);
    if (!b) {
      b = new Bitset(this.slotToId.length);
      this.members.set(key, b);
    }
    return b;
  }

  /** Inserts or replaces a node; returns the previous record, if any. */
  upsert(n: PolicyNode): { prev?: NodeRec; next: NodeRec } {
    const prev = this.nodes.get(n.id);
    if (prev) this.detach(prev);
    const slot = prev ? prev.slot : (this.freeSlots.pop() ?? this.slotToId.length);
    const next = makeNodeRec(n, slot);
    this.attach(next);
    return { prev, next };
  }

  remove(id: number): NodeRec | undefined {
    const prev = this.nodes.get(id);
    if (!prev) return undefined;
    this.detach(prev);
    this.nodes.delete(id);
    this.idToSlot.delete(id);
    this.slotToId[prev.slot] = -1;
    this.freeSlots.push(prev.slot);
    return prev;
  }

  private attach(n: NodeRec): void {
    this.nodes.set(n.id, n);
    this.slotToId[n.slot] = n.id;
    this.idToSlot.set(n.id, n.slot);
    for (const k of n.keys) this.membersOf(k).add(n.slot);
    for (const ip of n.ipStrings) this.byAddress.set(ip, n.id);
    if (n.subnetRoutes.length > 0) this.routers.add(n.id);
    if (n.advertisedSubnetRoutes.length > 0) this.advertisers.add(n.id);
    if (n.isExit) this.exits.add(n.id);
    if (n.subnetRoutes.length > 0) this.routeSetCache = null;
    if (hasOutsideAddress(n)) this.outsideCache = null;
  }

  private detach(n: NodeRec): void {
    for (const k of n.keys) this.members.get(k)?.delete(n.slot);
    for (const ip of n.ipStrings) if (this.byAddress.get(ip) === n.id) this.byAddress.delete(ip);
    if (this.routers.delete(n.id)) this.routeSetCache = null;
    this.advertisers.delete(n.id);
    this.exits.delete(n.id);
    // Only a node with such an address changes the set: rebuilding it on every join made a
    // join storm quadratic (every node's addresses scanned once per join).
    if (hasOutsideAddress(n)) this.outsideCache = null;
  }

  bySlot(slot: number): NodeRec {
    return this.nodes.get(this.slotToId[slot])!;
  }

  /** Every approved subnet route in the tailnet (what "*" adds to SrcIPs). */
  routeSet(): IPSet {
    if (!this.routeSetCache) {
      const all: IPRange[] = [];
      for (const id of this.routers) all.push(...this.nodes.get(id)!.subnetRoutes);
      this.routeSetCache = IPSet.of(all);
    }
    return this.routeSetCache;
  }

  /** Node addresses outside the tailnet ranges (normally none). */
  outsideAddresses(): IPSet {
    if (!this.outsideCache) {
      const all: IPRange[] = [];
      for (const n of this.nodes.values()) {
        for (const ip of n.ips) {
          if (isOutside(ip)) all.push({ family: ip.family, lo: ip.value, hi: ip.value });
        }
      }
      this.outsideCache = IPSet.of(all);
    }
    return this.outsideCache;
  }

  /** Nodes with an address in the set. */
  nodesInSet(set: IPSet, into: Bitset): void {
    for (const n of this.nodes.values()) if (nodeInSet(n, set)) into.add(n.slot);
  }

  /** Routers whose subnet routes (approved, or merely advertised) overlap the set. */
  routersOverlapping(set: IPSet, into: Bitset, advertised = false): void {
    for (const id of advertised ? this.advertisers : this.routers) {
      const n = this.nodes.get(id)!;
      const routes = advertised ? n.advertisedSubnetRoutes : n.subnetRoutes;
      if (routes.some((r) => set.overlaps(r))) into.add(n.slot);
    }
  }

  allSlots(): Bitset {
    return this.membersOf("*");
  }
}

function isOutside(ip: { family: 4 | 6; value: bigint }): boolean {
  return !TAILNET_ADDRESSES.contains(ip.family, ip.value);
}

function hasOutsideAddress(n: NodeRec): boolean {
  return n.ips.some(isOutside);
}
