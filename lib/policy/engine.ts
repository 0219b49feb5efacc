/**
 * PolicyEngine: the compiled policy plus the live tailnet, answering per-node questions
 * (packet filter, SSH policy, visible peers, node capabilities, route auto-approval) and
 * reporting which nodes a topology change affects.
 */

import { parsePrefix } from "../net/ip.ts";
import {
  type CompiledPolicy,
  compilePolicy,
  resolveAlias,
  type Sel,
  UserIndex,
} from "./compile.ts";
import { Resolver } from "./context.ts";
import { FilterRecipes } from "./filter.ts";
import {
  formatAddr,
  INTERNET,
  type IPRange,
  IPSet,
  parseRangeText,
  prefixRange,
  TAILNET_ADDRESSES,
} from "./ipset.ts";
import { Bitset, NodeIdSet } from "./nodeset.ts";
import { localpartDomain } from "./parse.ts";
import { SSHCompiler } from "./ssh.ts";
import { TagOwnership } from "./tag_owners.ts";
import { makeNodeRec, nodeInSet, type NodeRec, routesOverlap, Tailnet } from "./tailnet.ts";
import {
  type Alias,
  ALL_PORTS,
  type FilterRule,
  type NodeCapMap,
  type Policy,
  PolicyError,
  type PolicyNode,
  type PolicyUser,
  type PortRange,
  type SSHPolicy,
} from "./types.ts";

/** A tailnet-wide rule as address sets, for evaluating reachability (policy tests). */
export interface ReachabilityRule {
  src: IPSet;
  dst: { set: IPSet; ports: readonly PortRange[] }[];
  protos?: readonly number[];
}

const EVERYTHING = IPSet.fromStrings(["*"]);

/** Per template: its merge key (SrcIPs and protocols) and merged position (-1: not merged). */
interface RuleSignatures {
  keys: string[];
  positions: number[];
}

interface Snapshot {
  peers: number[];
  /** The changed node's class signatures before the change (its old classes go stale). */
  peerClass: string | null;
  filterClass: string | null;
  rules: RuleSignatures;
  ssh: string[];
  /** First position of every merge key (self and via rules merge into these too). */
  first: ReadonlyMap<string, number>;
}

export interface EngineOptions {
  /** Base of the SSH check URL (holdAndDelegate); default "https://unused". */
  serverURL?: string;
  /**
   * Email domains that belong to the tailnet; `localpart:*@domain` may only name these.
   * Default: the domains of all users' emails.
   */
  tailnetDomains?: string[];
  /**
   * Skip the checks that depend on the tailnet (localpart domains) in the constructor and
   * setPolicy: for loading an already stored policy at boot, where refusing would lock the
   * server out. Writes should go through checkPolicy.
   */
  trustPolicy?: boolean;
}

/** The policy used when none is configured: every node may reach every node. */
export function allowAllPolicy(): Policy {
  return {
    groups: new Map(),
    hosts: new Map(),
    tagOwners: new Map(),
    grants: [{
      src: [{ kind: "wildcard" }],
      dst: [{ kind: "wildcard" }],
      ip: [{ ports: [ALL_PORTS] }],
      via: [],
    }],
    ssh: [],
    nodeAttrs: [],
    autoApprovers: { routes: [], exitNode: [] },
    tests: [],
    sshTests: [],
    randomizeClientPort: false,
    localpartDomains: [],
    userDomains: [],
  };
}

/** Checks the parts of a policy that depend on the tailnet (users, domains). */
export function validateAgainstTailnet(
  policy: Policy,
  users: readonly PolicyUser[],
  options: EngineOptions = {},
): void {
  const domains = new Set(
    (options.tailnetDomains ??
      users.flatMap((
        u,
      ) => (u.email?.includes("@") ? [u.email.slice(u.email.lastIndexOf("@") + 1)] : [])))
      .map((d) => d),
  );
  for (const d of [...policy.localpartDomains, ...policy.userDomains]) {
    if (!domains.has(d)) {
      throw new PolicyError(
        `${d} is not associated with this Tailnet and cannot be used in user:*@<domain> expressions`,
      );
    }
  }
  // A canonical-looking localpart whose domain is itself a glob.
  for (const r of policy.ssh) {
    for (const u of r.users) {
      if (u.startsWith("localpart:*@") && localpartDomain(u) === null && u.length > 12) {
        throw new PolicyError(
          `${
            u.slice(12)
          } is not associated with this Tailnet and cannot be used in user:*@<domain> expressions`,
        );
      }
    }
  }
}

const FUNNEL_COMPANIONS = [
  "https://tailscale.com/cap/funnel-ports?ports=443,8443,10000",
  "https://tailscale.com/cap/warn-funnel-no-https",
];

export class PolicyEngine {
  private policy: Policy;
  private users: PolicyUser[];
  private compiled!: CompiledPolicy;
  private readonly tailnet = new Tailnet();
  private resolver!: Resolver;
  private ssh!: SSHCompiler;
  private readonly serverURL: string;
  /** Peer bits per class of equivalent nodes; cleared on every change. */
  private readonly peerClasses = new Map<string, Bitset>();
  private readonly recipes = new FilterRecipes();
  /** Class signatures per node record (records are replaced when a node changes). */
  private signatures = new WeakMap<NodeRec, { peer: string | null; filter: string | null }>();
  /** tagOwners resolved for the policy and users `compiled` was built from (built on demand). */
  private tagOwnership: { compiled: CompiledPolicy; ownership: TagOwnership } | null = null;

  constructor(
    policy: Policy | null,
    users: readonly PolicyUser[],
    nodes: readonly PolicyNode[],
    private readonly options: EngineOptions = {},
  ) {
    this.serverURL = options.serverURL ?? "https://unused";
    this.policy = policy ?? allowAllPolicy();
    this.users = [...users];
    if (!options.trustPolicy) validateAgainstTailnet(this.policy, this.users, options);
    for (const n of nodes) this.tailnet.upsert(n);
    this.recompile();
  }

  private recompile(): void {
    this.compiled = compilePolicy(this.policy, this.users);
    this.resolver = new Resolver(this.compiled, this.tailnet);
    this.ssh = new SSHCompiler(this.compiled.ssh, this.tailnet);
    this.peerClasses.clear();
    this.recipes.clear();
    this.signatures = new WeakMap();
  }

  /** Replaces the policy (already parsed); every node may be affected. */
  setPolicy(policy: Policy | null): number[] {
    const next = policy ?? allowAllPolicy();
    if (!this.options.trustPolicy) validateAgainstTailnet(next, this.users, this.options);
    this.policy = next;
    this.recompile();
    return this.nodeIds();
  }

  /** Replaces the user list (names, emails, roles); every node may be affected. */
  setUsers(users: readonly PolicyUser[]): number[] {
    this.users = [...users];
    this.recompile();
    return this.nodeIds();
  }

  getPolicy(): Policy {
    return this.policy;
  }

  /**
   * Whether the policy's tagOwners let `user` put `tag` on their own device (headscale's
   * NodeCanHaveTag for a registering user). No policy: no tag is anyone's. A user the engine has
   * not been told about yet is matched by name and email.
   */
  userMayOwnTag(user: PolicyUser, tag: string): boolean {
    if (this.tagOwnership?.compiled !== this.compiled) {
      const ownership = new TagOwnership(this.policy, new UserIndex(this.users));
      this.tagOwnership = { compiled: this.compiled, ownership };
    }
    return this.tagOwnership.ownership.mayOwn(user, tag);
  }

  nodeIds(): number[] {
    return [...this.tailnet.nodes.keys()].sort((a, b) => a - b);
  }

  node(id: number): PolicyNode | undefined {
    return this.tailnet.nodes.get(id)?.input;
  }

  private rec(id: number): NodeRec {
    const n = this.tailnet.nodes.get(id);
    if (!n) throw new RangeError(`unknown node ${id}`);
    return n;
  }

  // -------------------------------------------------------------------------------------------
  // Per-node outputs.

  /** The node's packet filter (tailcfg FilterRule list; empty = deny all inbound). */
  filterFor(id: number): FilterRule[] {
    const n = this.rec(id);
    return this.recipes.filterFor(this.resolver, n, this.filterSignature(n));
  }

  /** The node's SSH policy, or null when the policy has no ssh rules. */
  sshPolicyFor(id: number): SSHPolicy | null {
    return this.ssh.policyFor(this.rec(id), this.serverURL);
  }

  /**
   * For Tailscale SSH check mode: the check period (ms) of the first check rule letting `src`
   * in to `dst`, 0 for "always", or null when none covers the pair (or a node is unknown).
   */
  sshCheckPeriodMs(src: number, dst: number): number | null {
    const a = this.tailnet.nodes.get(src), b = this.tailnet.nodes.get(dst);
    return a && b ? this.ssh.checkPeriodMs(a, b) : null;
  }

  /** Nodes this node may see (symmetric). The view is valid until the next change. */
  peersOf(id: number): NodeIdSet {
    const n = this.rec(id);
    return new NodeIdSet(this.peerBits(n), this.tailnet.slotToId, this.tailnet.idToSlot, n.slot);
  }

  /** Node capabilities from nodeAttrs and randomizeClientPort (values null = no data). */
  capMapFor(id: number): NodeCapMap {
    const n = this.rec(id);
    const out: NodeCapMap = {};
    if (this.compiled.randomizeClientPort) out["randomize-client-port"] = null;
    for (const na of this.compiled.nodeAttrs) {
      if (!this.resolver.nodeMatches(n, na.target)) continue;
      for (const a of na.attr) {
        if (!(a in out)) out[a] = null;
        if (a === "funnel") { for (const c of FUNNEL_COMPANIONS) if (!(c in out)) out[c] = null; }
      }
    }
    return out;
  }

  /**
   * Whether the policy's autoApprovers approve `route` for `node` (given as a node or an id).
   * Exit routes (/0) are approved only through `autoApprovers.exitNode`.
   */
  autoApprove(node: PolicyNode | number, route: string): boolean {
    const n = typeof node === "number" ? this.rec(node) : makeNodeRec(node, -1);
    const p = parsePrefix(route.trim());
    if (!p) return false;
    if (p.bits === 0) return this.approverMatches(n, this.compiled.exitApprovers);
    const r = prefixRange(p);
    for (const a of this.compiled.autoApprovers) {
      if (a.prefix.family !== p.family || a.prefix.bits > p.bits) continue;
      const ar = prefixRange(a.prefix);
      if (r.lo < ar.lo || r.hi > ar.hi) continue;
      if (this.approverMatches(n, a.approvers)) return true;
    }
    return false;
  }

  /** The node's advertised routes that the autoApprovers approve (to add to its approved set). */
  autoApprovedRoutes(node: PolicyNode | number): string[] {
    const n = typeof node === "number" ? this.rec(node).input : node;
    return n.advertisedRoutes.filter((r) => this.autoApprove(n, r));
  }

  private approverMatches(n: NodeRec, sels: readonly Sel[]): boolean {
    return sels.some((s) => s.t === "key" && n.keys.includes(s.key));
  }

  // -------------------------------------------------------------------------------------------
  // Peers.

  /**
   * Peer bits of a node, the node itself possibly included. Nodes with the same membership
   * keys and the same address-rule memberships see the same peers, so results are shared
   * per such class (routers and exit nodes are computed on their own).
   */
  private peerBits(n: NodeRec): Bitset {
    const sig = this.peerSignature(n);
    if (sig !== null) {
      const hit = this.peerClasses.get(sig);
      if (hit) return hit;
    }
    const bits = this.computePeerBits(n);
    if (sig !== null) this.peerClasses.set(sig, bits);
    return bits;
  }

  /** The node's peer class: its keys and address-rule memberships (null: router or exit). */
  private peerSignature(n: NodeRec): string | null {
    const cached = this.signatures.get(n);
    if (cached) return cached.peer;
    const sigs = {
      peer: this.computePeerSignature(n),
      filter: this.recipes.signature(this.resolver, n),
    };
    this.signatures.set(n, sigs);
    return sigs.peer;
  }

  private filterSignature(n: NodeRec): string | null {
    this.peerSignature(n);
    return this.signatures.get(n)!.filter;
  }

  private computePeerSignature(n: NodeRec): string | null {
    if (n.subnetRoutes.length > 0 || n.isExit) return null;
    const rs = this.resolver;
    let sig = n.keys.join("\u0000") + "|";
    for (const i of rs.addressTouch) {
      sig += (rs.src(i).nodes.has(n.slot) ? "1" : "0") + (rs.dst(i).nodes.has(n.slot) ? "1" : "0");
    }
    return sig;
  }

  private computePeerBits(n: NodeRec): Bitset {
    const rs = this.resolver;
    const tn = this.tailnet;
    const acc = new Bitset(tn.slotToId.length);
    const templates = this.compiled.templates;
    for (const i of this.touchingTemplates(n)) {
      const t = templates[i];
      if (t.self) {
        if (n.tagged || n.userId === undefined) continue;
        const info = rs.selfInfo(i, n.userId);
        if (info.srcBits.has(n.slot)) acc.orWith(tn.membersOf(`u:${n.userId}`));
        acc.orWith(info.srcBits);
        continue;
      }
      if (t.via) {
        const src = rs.src(i);
        if (this.isViaNode(i, n)) acc.orWith(src.nodes);
        if (src.nodes.has(n.slot)) acc.orWith(this.viaNodes(i));
        continue;
      }
      const src = rs.src(i);
      const dst = rs.dst(i);
      if (src.nodes.has(n.slot)) acc.orWith(dst.nodes);
      if (dst.nodes.has(n.slot)) acc.orWith(src.nodes);
    }
    return acc;
  }

  /** Templates whose sides may contain node n. */
  private touchingTemplates(n: NodeRec): Iterable<number> {
    const rs = this.resolver;
    if (n.subnetRoutes.length > 0 || n.isExit) return this.compiled.templates.keys();
    const seen = new Set<number>(rs.addressTouch);
    for (const k of n.keys) for (const i of rs.touchingKey(k)) seen.add(i);
    return seen;
  }

  private isViaNode(i: number, n: NodeRec): boolean {
    const t = this.compiled.templates[i];
    if (!t.via!.some((tag) => n.tags.includes(tag))) return false;
    for (const d of t.dst) {
      if (d.sel.t === "internet" && n.isExit) return true;
      if (d.sel.t === "addr" && routesOverlap(n, d.sel.set)) return true;
    }
    return false;
  }

  private viaNodes(i: number): Bitset {
    const tn = this.tailnet;
    const out = new Bitset(tn.slotToId.length);
    for (const tag of this.compiled.templates[i].via!) {
      for (const slot of tn.membersOf(`t:${tag}`).bits()) {
        if (this.isViaNode(i, tn.bySlot(slot))) out.add(slot);
      }
    }
    return out;
  }

  // -------------------------------------------------------------------------------------------
  // Incremental updates.

  /** Adds or replaces a node; returns the ids of nodes whose outputs may have changed. */
  upsertNode(node: PolicyNode): number[] {
    const prev = this.tailnet.nodes.get(node.id);
    // Endpoints, Hostinfo and online state change often and are not the policy's business.
    if (prev && samePolicyInput(prev.input, node)) return [];
    const before = this.snapshotFor(prev);
    const { next } = this.tailnet.upsert(node);
    return this.afterChange(prev, next, before);
  }

  /**
   * As upsertNode and removeNode, for when nobody asks who is affected (no policy in force):
   * the tailnet is updated and the derived caches dropped, which costs nothing per peer. Working
   * out the affected nodes of an allow-all tailnet walks every node on every join.
   */
  trackNode(node: PolicyNode): void {
    const prev = this.tailnet.nodes.get(node.id);
    if (prev && samePolicyInput(prev.input, node)) return;
    const { next } = this.tailnet.upsert(node);
    this.invalidateFor(prev, next);
    this.dropClasses();
  }

  untrackNode(id: number): void {
    const prev = this.tailnet.nodes.get(id);
    if (!prev) return;
    this.tailnet.remove(id);
    this.invalidateFor(prev, undefined);
    this.dropClasses();
  }

  private dropClasses(): void {
    this.peerClasses.clear();
    this.recipes.clear();
    this.signatures = new WeakMap();
  }

  /** Drops what the resolver and SSH compiler derived from the node's old and new attributes. */
  private invalidateFor(
    prev: NodeRec | undefined,
    next: NodeRec | undefined,
  ): { routesChanged: boolean; touched: IPRange[] } {
    const sameIPs = prev !== undefined && next !== undefined &&
      prev.ipStrings.join() === next.ipStrings.join();
    const oldKeys = new Set(prev?.keys ?? []);
    const newKeys = new Set(next?.keys ?? []);
    const changed = new Set<string>();
    for (const k of oldKeys) if (!newKeys.has(k) || !sameIPs) changed.add(k);
    for (const k of newKeys) if (!oldKeys.has(k) || !sameIPs) changed.add(k);
    const routesChanged =
      (prev?.subnetRouteStrings.join() ?? "") !== (next?.subnetRouteStrings.join() ?? "") ||
      (prev?.isExit ?? false) !== (next?.isExit ?? false);
    const ranges = (x: NodeRec | undefined): IPRange[] =>
      (x?.ips ?? []).map((ip) => ({ family: ip.family, lo: ip.value, hi: ip.value }));
    const added = ranges(next);
    const touched = [...ranges(prev), ...added];
    // Keys the node now holds and held under no address before: their sets only grow.
    const gained = new Set<string>();
    for (const k of newKeys) if (!oldKeys.has(k)) gained.add(k);
    this.resolver.invalidate(changed, routesChanged, touched, gained, added);
    this.ssh.invalidate(changed, routesChanged);
    return { routesChanged, touched };
  }

  /** Removes a node; returns the ids of nodes whose outputs may have changed. */
  removeNode(id: number): number[] {
    const prev = this.tailnet.nodes.get(id);
    if (!prev) return [];
    const before = this.snapshotFor(prev);
    this.tailnet.remove(id);
    return this.afterChange(prev, undefined, before);
  }

  private snapshotFor(prev: NodeRec | undefined): Snapshot {
    return {
      peers: prev ? [...this.peersOf(prev.id)] : [],
      peerClass: prev ? this.peerSignature(prev) : null,
      filterClass: prev ? this.filterSignature(prev) : null,
      rules: this.ruleSignatures(),
      ssh: this.sshSignatures(),
      first: this.resolver.firstSeqByKey(),
    };
  }

  /**
   * Per template, what its rules look like to every destination: the SrcIPs and, for port
   * rules, the merged position. A template whose signature changes changes the filters of
   * all its destinations.
   */
  private ruleSignatures(): RuleSignatures {
    const rs = this.resolver;
    const first = rs.firstSeqByKey();
    const templates = this.compiled.templates;
    const keys: string[] = new Array(templates.length);
    const positions: number[] = new Array(templates.length);
    for (let i = 0; i < templates.length; i++) {
      const t = templates[i];
      if (t.self) {
        keys[i] = "";
        positions[i] = -1;
        continue;
      }
      keys[i] = rs.mergeKey(i);
      positions[i] = t.kind !== "ip" || t.via ? -1 : first.get(keys[i]) ?? t.seq;
    }
    return { keys, positions };
  }

  /** Adds the nodes whose autogroup:self or via rules have one of these merge keys. */
  private addMovedPerNodeRules(moved: ReadonlySet<string>, addBits: (b: Bitset) => void): void {
    const rs = this.resolver;
    const tn = this.tailnet;
    const templates = this.compiled.templates;
    for (let i = 0; i < templates.length; i++) {
      if (templates[i].via && moved.has(rs.mergeKey(i))) addBits(this.viaNodes(i));
    }
    if (!templates.some((t) => t.self)) return;
    for (const key of moved) {
      // A self rule's SrcIPs are one owner's devices: find the owner from the first address.
      const firstText = key.slice(0, key.search(/[,|]/));
      const range = parseRangeText(firstText)?.[0];
      if (!range) continue;
      const id = tn.byAddress.get(formatAddr(range.family, range.lo));
      const owner = id === undefined ? undefined : tn.nodes.get(id)?.userId;
      if (owner === undefined) continue;
      for (let i = 0; i < templates.length; i++) {
        if (templates[i].self && rs.selfInfo(i, owner).mergeKey === key) {
          addBits(tn.membersOf(`u:${owner}`));
        }
      }
    }
  }

  private sshSignatures(): string[] {
    return this.compiled.ssh.map((_, i) => this.ssh.signature(i));
  }

  private afterChange(
    prev: NodeRec | undefined,
    next: NodeRec | undefined,
    before: Snapshot,
  ): number[] {
    const tn = this.tailnet;
    const { routesChanged, touched } = this.invalidateFor(prev, next);
    if (routesChanged) {
      this.dropClasses();
      return this.nodeIds();
    }

    const affected = new Set<number>(before.peers);
    if (next) {
      affected.add(next.id);
      // Computed directly: the class cache is only cleaned once the change is known.
      for (const slot of this.computePeerBits(next).bits()) {
        if (slot !== next.slot) affected.add(tn.slotToId[slot]);
      }
    }
    const addBits = (b: Bitset) => {
      for (const slot of b.bits()) {
        const id = tn.slotToId[slot];
        if (id >= 0) affected.add(id);
      }
    };
    const addOwners = () => {
      for (const x of [prev, next]) {
        if (x && x.userId !== undefined) addBits(tn.membersOf(`u:${x.userId}`));
      }
    };

    // Rules whose SrcIPs or merged position changed: all their destinations change.
    const rs = this.resolver;
    const templates = this.compiled.templates;
    const after = this.ruleSignatures();
    for (let i = 0; i < templates.length; i++) {
      // Unchanged keys are usually the same cached string, so this is mostly a pointer check.
      if (
        after.keys[i] === before.rules.keys[i] && after.positions[i] === before.rules.positions[i]
      ) continue;
      if (templates[i].via) addBits(this.viaNodes(i));
      else addBits(rs.dst(i).nodes);
    }
    // autogroup:self rules list the owner's devices.
    if (templates.some((t) => t.self)) addOwners();
    // Per-node rules (autogroup:self, via) take the position of a tailnet-wide rule with the
    // same SrcIPs; when such a key appears, moves or goes, they move with it.
    const first = rs.firstSeqByKey();
    const moved = new Set<string>();
    for (const [k, pos] of first) if (before.first.get(k) !== pos) moved.add(k);
    for (const [k, pos] of before.first) if (first.get(k) !== pos) moved.add(k);
    if (moved.size > 0) this.addMovedPerNodeRules(moved, addBits);
    // SSH rules whose principals changed.
    const sshAfter = this.sshSignatures();
    this.compiled.ssh.forEach((r, i) => {
      if (sshAfter[i] === before.ssh[i]) return;
      for (const sel of r.dst) {
        if (sel.t === "key") addBits(tn.membersOf(sel.key));
        else if (sel.t === "all") addBits(tn.allSlots());
      }
      // autogroup:self and localpart rules list the owner's other devices.
      if (r.dstSelf || r.hasLocalpart) addOwners();
    });
    // Routers whose routes cover the node's addresses list them in their own filters.
    for (const rid of tn.routers) {
      const router = tn.nodes.get(rid)!;
      if (
        touched.some((ip) =>
          router.subnetRoutes.some((r) => r.family === ip.family && r.lo <= ip.lo && ip.lo <= r.hi)
        )
      ) {
        affected.add(rid);
      }
    }
    if (prev && !next) affected.delete(prev.id);
    const out = [...affected].filter((id) => tn.nodes.has(id)).sort((a, b) => a - b);

    // Classes with an affected member are stale; every other class still holds (its members'
    // outputs did not change). The changed node's old classes go too.
    this.peerClasses.delete(before.peerClass ?? "");
    this.recipes.forget(before.filterClass);
    for (const id of out) {
      const n = tn.nodes.get(id)!;
      const p = this.peerSignature(n);
      if (p !== null) this.peerClasses.delete(p);
      this.recipes.forget(this.filterSignature(n));
    }
    return out;
  }

  // -------------------------------------------------------------------------------------------
  // Address views used by policy tests.

  /** The addresses an alias stands for in this tailnet (autogroup:self: none). */
  aliasAddresses(alias: Alias): IPSet {
    const sels = resolveAlias(alias, this.policy, new UserIndex(this.users));
    let out = IPSet.EMPTY;
    for (const s of sels) out = out.union(this.selAddresses(s, "src"));
    return out;
  }

  private selAddresses(s: Sel, side: "src" | "dst"): IPSet {
    switch (s.t) {
      case "all":
        return side === "src" ? TAILNET_ADDRESSES.union(this.tailnet.routeSet()) : EVERYTHING;
      case "dangerAll":
        return EVERYTHING;
      case "key":
        return this.resolver.keyAddresses(s.key);
      case "addr":
        return s.set;
      case "internet":
        return INTERNET;
      default:
        return IPSet.EMPTY;
    }
  }

  /** autogroup:self seen from a source: the source user's own untagged devices. */
  selfAddresses(src: Alias): IPSet {
    if (src.kind !== "user") return IPSet.EMPTY;
    const u = new UserIndex(this.users).resolve(src.token);
    return u ? this.resolver.keyAddresses(`u:${u.id}`) : IPSet.EMPTY;
  }

  nodesWithAddressIn(set: IPSet): number[] {
    const out: number[] = [];
    for (const n of this.tailnet.nodes.values()) if (nodeInSet(n, set)) out.push(n.id);
    return out.sort((a, b) => a - b);
  }

  /** Every port rule of the policy as address sets (autogroup:self expanded per user). */
  reachabilityRules(): ReachabilityRule[] {
    const rs = this.resolver;
    const tn = this.tailnet;
    const out: ReachabilityRule[] = [];
    this.compiled.templates.forEach((t, i) => {
      if (t.kind !== "ip") return;
      if (t.self) {
        for (const u of this.users) {
          const devices = [...tn.membersOf(`u:${u.id}`).bits()].map((s) => tn.bySlot(s));
          const srcs = devices.filter((d) => rs.nodeMatches(d, t.src));
          if (srcs.length === 0) continue;
          const ranges = (list: NodeRec[]): IPRange[] =>
            list.flatMap((d) =>
              d.ips.map((ip) => ({ family: ip.family, lo: ip.value, hi: ip.value }))
            );
          out.push({
            src: IPSet.of(ranges(srcs)),
            dst: [{ set: IPSet.of(ranges(devices)), ports: t.dst[0]?.ports ?? [] }],
            protos: t.protos,
          });
        }
        return;
      }
      const src = rs.src(i);
      out.push({
        src: src.dangerAll ? EVERYTHING : src.addr,
        dst: t.dst.map((d) => ({ set: this.selAddresses(d.sel, "dst"), ports: d.ports })),
        protos: t.protos,
      });
    });
    return out;
  }
}

/** The same attributes as far as the policy is concerned (all of PolicyNode). */
function samePolicyInput(a: PolicyNode, b: PolicyNode): boolean {
  return a.id === b.id && a.name === b.name && a.ipv4 === b.ipv4 && a.ipv6 === b.ipv6 &&
    a.userId === b.userId && sameList(a.tags, b.tags) &&
    sameList(a.advertisedRoutes, b.advertisedRoutes) &&
    sameList(a.approvedRoutes, b.approvedRoutes);
}

function sameList(a: readonly string[], b: readonly string[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
