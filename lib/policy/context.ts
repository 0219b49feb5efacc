/**
 * Resolution of compiled selectors against the current tailnet, cached per template and per
 * membership key, with targeted invalidation when a node changes. This is the shared state
 * behind filters, SSH policies and peer sets.
 */

import type { CompiledPolicy, Sel, Template } from "./compile.ts";
import { AddressNames, INTERNET, type IPRange, IPSet, TAILNET_ADDRESSES } from "./ipset.ts";
import { Bitset } from "./nodeset.ts";
import { nodeInSet, type NodeRec, routesOverlap, type Tailnet } from "./tailnet.ts";

/** A side of a rule resolved against the tailnet. */
export interface Side {
  /** The addresses the side stands for (SrcIPs / unreduced destination addresses). */
  addr: IPSet;
  /** Nodes on the side for peer visibility: address inside, or subnet routes overlapping. */
  nodes: Bitset;
  /** True when the side lists no address at all. */
  empty: boolean;
  /** Contains autogroup:danger-all (SrcIPs become ["*"]). */
  dangerAll: boolean;
}

export interface TemplateState {
  src?: Side;
  srcStrings?: string[];
  mergeKey?: string;
  dst?: Side;
  /** autogroup:self, per owner: their devices on the source side. */
  self?: Map<number, SelfInfo>;
}

/** An autogroup:self rule seen from one user's devices. */
export interface SelfInfo {
  /** The user's untagged devices the rule's sources cover. */
  srcNodes: NodeRec[];
  srcBits: Bitset;
  srcStrings: readonly string[];
  /** All of the user's untagged devices. */
  sameStrings: readonly string[];
  /** Merge key of the rule's port entries for these sources. */
  mergeKey: string;
}

const FULL = IPSet.fromStrings(["*"]);

function addToIndex(index: Map<string, number[]>, key: string, i: number): void {
  const list = index.get(key) ?? [];
  if (list[list.length - 1] !== i) list.push(i);
  index.set(key, list);
}

export class Resolver {
  readonly states: TemplateState[];
  private readonly keyIPs = new Map<string, IPSet>();
  /** templates whose cached state depends on the members of a key ("self": any owner) */
  private readonly depsByKey = new Map<string, number[]>();
  /** templates naming addresses, with those addresses (invalidated when a node there changes) */
  private readonly addrDeps: { i: number; set: IPSet }[] = [];
  /** templates a node holding a key may be on either side of */
  private readonly touchByKey = new Map<string, number[]>();
  /** templates a node may be on by address alone */
  readonly addressTouch: number[] = [];
  /** templates a node holding a key may be a destination of */
  private readonly dstByKey = new Map<string, number[]>();
  /** templates whose destinations are addresses (any node may be one) */
  readonly addressDst: number[] = [];
  private firstSeqCache: Map<string, number> | null = null;
  /** Remembered address spellings for this engine's SrcIPs. */
  readonly names = new AddressNames();

  constructor(readonly compiled: CompiledPolicy, readonly tailnet: Tailnet) {
    this.states = compiled.templates.map(() => ({}));
    compiled.templates.forEach((t, i) => {
      let addr = IPSet.EMPTY;
      let byAddress = false;
      const note = (s: Sel, dst: boolean) => {
        const k = s.t === "key" ? s.key : s.t === "all" || s.t === "dangerAll" ? "*" : null;
        if (k) {
          addToIndex(this.depsByKey, k, i);
          addToIndex(this.touchByKey, k, i);
          if (dst && !t.self && !t.via) addToIndex(this.dstByKey, k, i);
        } else if (s.t === "addr" || s.t === "internet") {
          if (s.t === "addr") addr = addr.union(s.set);
          byAddress = true;
          if (dst && !t.via) this.addressDst.push(i);
        }
      };
      for (const s of t.src) note(s, false);
      for (const d of t.dst) note(d.sel, true);
      if (t.self) {
        addToIndex(this.depsByKey, "self", i);
        addToIndex(this.touchByKey, "member", i);
        addToIndex(this.dstByKey, "member", i);
      }
      for (const tag of t.via ?? []) {
        addToIndex(this.depsByKey, `t:${tag}`, i);
        addToIndex(this.touchByKey, `t:${tag}`, i);
        addToIndex(this.dstByKey, `t:${tag}`, i);
      }
      if (!addr.isEmpty()) this.addrDeps.push({ i, set: addr });
      if (byAddress) this.addressTouch.push(i);
    });
    this.addressDst = [...new Set(this.addressDst)];
  }

  /**
   * Drops cached state a node change could affect: rules mentioning the changed keys, rules
   * naming addresses of the node (before or after), or everything (routes changed). A key the
   * node only gained (`gained`, with the node's addresses `added`) keeps its address set, grown
   * by those addresses: a join storm would otherwise rebuild the set of every member on each join.
   */
  invalidate(
    keys: Iterable<string>,
    everything: boolean,
    touched: readonly IPRange[] = [],
    gained: ReadonlySet<string> = new Set(),
    added: readonly IPRange[] = [],
  ): void {
    this.firstSeqCache = null;
    if (everything) {
      this.keyIPs.clear();
      for (let i = 0; i < this.states.length; i++) this.states[i] = {};
      return;
    }
    let selfToo = false;
    let grow: IPSet | undefined;
    for (const k of keys) {
      const had = this.keyIPs.get(k);
      if (had !== undefined && gained.has(k)) {
        this.keyIPs.set(k, had.union(grow ??= IPSet.of(added)));
      } else {
        this.keyIPs.delete(k);
      }
      for (const i of this.depsByKey.get(k) ?? []) this.states[i] = {};
      if (k === "member" || k.startsWith("u:")) selfToo = true;
    }
    if (selfToo) { for (const i of this.depsByKey.get("self") ?? []) this.states[i] = {}; }
    for (const { i, set } of this.addrDeps) {
      if (touched.some((r) => set.overlaps(r))) this.states[i] = {};
    }
  }

  /** Templates whose cached state depends on this key. */
  templatesWithKey(key: string): readonly number[] {
    return this.depsByKey.get(key) ?? [];
  }

  /** Templates a node holding this key may be on (either side). */
  touchingKey(key: string): readonly number[] {
    return this.touchByKey.get(key) ?? [];
  }

  /** Templates a node holding this key may be a destination of. */
  dstTemplatesWithKey(key: string): readonly number[] {
    return this.dstByKey.get(key) ?? [];
  }

  /** An autogroup:self template from the point of view of one owner's devices. */
  selfInfo(i: number, userId: number): SelfInfo {
    const st = this.states[i];
    st.self ??= new Map();
    let info = st.self.get(userId);
    if (!info) {
      const tn = this.tailnet;
      const t = this.compiled.templates[i];
      const same: NodeRec[] = [];
      const srcNodes: NodeRec[] = [];
      const srcBits = new Bitset(tn.slotToId.length);
      for (const slot of tn.membersOf(`u:${userId}`).bits()) {
        const m = tn.bySlot(slot);
        same.push(m);
        if (this.nodeMatches(m, t.src)) {
          srcNodes.push(m);
          srcBits.add(slot);
        }
      }
      const addrs = (list: NodeRec[]) =>
        Object.freeze(
          IPSet.of(list.flatMap((m) =>
            m.ips.map((ip) => ({ family: ip.family, lo: ip.value, hi: ip.value }))
          ))
            .toStrings(this.names.format),
        );
      const srcStrings = addrs(srcNodes);
      info = {
        srcNodes,
        srcBits,
        srcStrings,
        sameStrings: addrs(same),
        mergeKey: mergeKeyOf(srcStrings, t.protos),
      };
      st.self.set(userId, info);
    }
    return info;
  }

  /** Addresses of the nodes holding a membership key. */
  keyAddresses(key: string): IPSet {
    let set = this.keyIPs.get(key);
    if (!set) {
      const ranges: IPRange[] = [];
      for (const slot of this.tailnet.membersOf(key).bits()) {
        for (const ip of this.tailnet.bySlot(slot).ips) {
          ranges.push({ family: ip.family, lo: ip.value, hi: ip.value });
        }
      }
      set = IPSet.of(ranges);
      this.keyIPs.set(key, set);
    }
    return set;
  }

  /**
   * Resolves selectors. On the source side "*" means every tailnet address plus every approved
   * subnet route; on the destination side it means everything (ip rules) or the tailnet
   * ranges (cap grants).
   */
  resolveSide(sels: readonly Sel[], side: "src" | "dstIP" | "dstCap"): Side {
    const tn = this.tailnet;
    const parts: IPSet[] = [];
    const nodes = new Bitset(tn.slotToId.length);
    let dangerAll = false;
    let wildcard = false;
    for (const s of sels) {
      switch (s.t) {
        case "all":
          wildcard = true;
          nodes.orWith(tn.allSlots());
          if (side === "src") parts.push(TAILNET_ADDRESSES, tn.routeSet(), tn.outsideAddresses());
          else parts.push(side === "dstIP" ? FULL : TAILNET_ADDRESSES);
          break;
        case "dangerAll":
          dangerAll = true;
          wildcard = true;
          nodes.orWith(tn.allSlots());
          parts.push(FULL);
          break;
        case "key":
          nodes.orWith(tn.membersOf(s.key));
          parts.push(this.keyAddresses(s.key));
          break;
        case "addr":
          parts.push(s.set);
          tn.nodesInSet(s.set, nodes);
          break;
        case "internet":
          parts.push(INTERNET);
          break;
        case "self":
          break;
      }
    }
    const addr = IPSet.unionAll(parts);
    if (!wildcard) tn.routersOverlapping(addr, nodes);
    if (side !== "src") {
      // Exit nodes are reachable through any destination covering the whole internet.
      const v4all = addr.covers({ family: 4, lo: 0n, hi: (1n << 32n) - 1n });
      const v6all = addr.covers({ family: 6, lo: 0n, hi: (1n << 128n) - 1n });
      if (v4all || v6all || INTERNET.isSubsetOf(addr)) {
        for (const id of tn.exits) nodes.add(tn.nodes.get(id)!.slot);
      }
    }
    return { addr, nodes, empty: addr.isEmpty(), dangerAll };
  }

  state(i: number): TemplateState {
    return this.states[i];
  }

  src(i: number): Side {
    const st = this.states[i];
    if (!st.src) st.src = this.resolveSide(this.compiled.templates[i].src, "src");
    return st.src;
  }

  dst(i: number): Side {
    const st = this.states[i];
    if (!st.dst) {
      const t = this.compiled.templates[i];
      st.dst = this.resolveSide(t.dst.map((d) => d.sel), t.kind === "ip" ? "dstIP" : "dstCap");
    }
    return st.dst;
  }

  srcStrings(i: number): string[] {
    const st = this.states[i];
    if (!st.srcStrings) {
      const s = this.src(i);
      st.srcStrings = Object.freeze(
        s.dangerAll ? ["*"] : s.addr.toStrings(this.names.format),
      ) as string[];
    }
    return st.srcStrings;
  }

  mergeKey(i: number): string {
    const st = this.states[i];
    if (st.mergeKey === undefined) {
      st.mergeKey = mergeKeyOf(this.srcStrings(i), this.compiled.templates[i].protos);
    }
    return st.mergeKey;
  }

  /**
   * For every merge key, the first position at which a tailnet-wide ip rule with that key
   * exists: merged rules keep the position of their first member.
   */
  firstSeqByKey(): Map<string, number> {
    if (!this.firstSeqCache) {
      const m = new Map<string, number>();
      this.compiled.templates.forEach((t, i) => {
        if (t.kind !== "ip" || t.self || t.via) return;
        if (this.srcStrings(i).length === 0 || !this.hasAnyDst(t)) return;
        const k = this.mergeKey(i);
        if (!m.has(k)) m.set(k, t.seq);
      });
      this.firstSeqCache = m;
    }
    return this.firstSeqCache;
  }

  /** True when the template's destinations resolve to at least one address. */
  hasAnyDst(t: Template): boolean {
    return t.dst.some((d) => d.sel.t !== "key" || !this.tailnet.membersOf(d.sel.key).isEmpty());
  }

  /** Does a node match the selectors by address (not by routes)? */
  nodeMatches(n: NodeRec, sels: readonly Sel[]): boolean {
    for (const s of sels) {
      switch (s.t) {
        case "all":
        case "dangerAll":
          return true;
        case "key":
          if (n.keys.includes(s.key)) return true;
          break;
        case "addr":
          if (nodeInSet(n, s.set)) return true;
          break;
        case "internet":
          if (nodeInSet(n, INTERNET)) return true;
          break;
      }
    }
    return false;
  }

  /** Does a node's subnet routes overlap what the selectors stand for? */
  routesMatch(n: NodeRec, side: Side): boolean {
    return n.subnetRoutes.length > 0 && routesOverlap(n, side.addr);
  }
}

export function mergeKeyOf(srcStrings: readonly string[], protos?: readonly number[]): string {
  return `${srcStrings.join(",")}|${protos ? protos.join(",") : ""}`;
}
