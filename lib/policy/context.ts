/**
 * Resolution of compiled selectors against the current tailnet, cached per template and per
 * membership key, with targeted invalidation when a node changes. This is the shared state
 * behind filters, SSH policies and peer sets.
 */

import type { CompiledPolicy, Sel, Template } from "./compile.ts";
import { INTERNET, type IPRange, IPSet, TAILNET_ADDRESSES } from "./ipset.ts";
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
}

const FULL = IPSet.fromStrings(["*"]);

export class Resolver {
  readonly states: TemplateState[];
  private readonly keyIPs = new Map<string, IPSet>();
  /** template indexes by membership key mentioned on either side */
  private readonly byKey = new Map<string, number[]>();
  /** templates with address, internet or wildcard selectors */
  private readonly addressTemplates: number[] = [];
  get addressTemplateIndexes(): readonly number[] {
    return this.addressTemplates;
  }
  /** template indexes by membership key on the destination side */
  private readonly dstByKey = new Map<string, number[]>();
  /** templates that may concern any node: non-key destinations, autogroup:self, via */
  readonly generalTemplates: number[] = [];
  private firstSeqCache: Map<string, number> | null = null;

  constructor(readonly compiled: CompiledPolicy, readonly tailnet: Tailnet) {
    this.states = compiled.templates.map(() => ({}));
    compiled.templates.forEach((t, i) => {
      const sels = [...t.src, ...t.dst.map((d) => d.sel)];
      const keys = new Set<string>();
      let address = false;
      for (const s of sels) {
        if (s.t === "key") keys.add(s.key);
        else if (s.t !== "self") address = true;
      }
      if (t.self) keys.add("member");
      for (const k of keys) {
        const list = this.byKey.get(k) ?? [];
        list.push(i);
        this.byKey.set(k, list);
      }
      if (address || t.via) this.addressTemplates.push(i);
      if (t.self || t.via || t.dst.some((d) => d.sel.t !== "key")) {
        this.generalTemplates.push(i);
      } else {
        for (const d of t.dst) {
          if (d.sel.t !== "key") continue;
          const list = this.dstByKey.get(d.sel.key) ?? [];
          if (list[list.length - 1] !== i) list.push(i);
          this.dstByKey.set(d.sel.key, list);
        }
      }
    });
  }

  /** Drops cached state that a change to these keys (and addresses) could affect. */
  invalidate(keys: Iterable<string>, everything: boolean): void {
    this.firstSeqCache = null;
    if (everything) {
      this.keyIPs.clear();
      for (let i = 0; i < this.states.length; i++) this.states[i] = {};
      return;
    }
    for (const k of keys) {
      this.keyIPs.delete(k);
      for (const i of this.byKey.get(k) ?? []) this.states[i] = {};
    }
    for (const i of this.addressTemplates) this.states[i] = {};
  }

  templatesWithKey(key: string): readonly number[] {
    return this.byKey.get(key) ?? [];
  }

  /** Templates with this membership key among their (non-self, non-via) destinations. */
  dstTemplatesWithKey(key: string): readonly number[] {
    return this.dstByKey.get(key) ?? [];
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
    let addr = IPSet.EMPTY;
    const nodes = new Bitset(tn.slotToId.length);
    let dangerAll = false;
    let wildcard = false;
    for (const s of sels) {
      switch (s.t) {
        case "all":
          wildcard = true;
          nodes.orWith(tn.allSlots());
          if (side === "src") {
            addr = addr.union(TAILNET_ADDRESSES).union(tn.routeSet()).union(tn.outsideAddresses());
          } else if (side === "dstIP") addr = addr.union(FULL);
          else addr = addr.union(TAILNET_ADDRESSES);
          break;
        case "dangerAll":
          dangerAll = true;
          wildcard = true;
          nodes.orWith(tn.allSlots());
          addr = addr.union(FULL);
          break;
        case "key":
          nodes.orWith(tn.membersOf(s.key));
          addr = addr.union(this.keyAddresses(s.key));
          break;
        case "addr":
          addr = addr.union(s.set);
          tn.nodesInSet(s.set, nodes);
          break;
        case "internet":
          addr = addr.union(INTERNET);
          break;
        case "self":
          break;
      }
    }
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
      st.srcStrings = s.dangerAll ? ["*"] : s.addr.toStrings();
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
