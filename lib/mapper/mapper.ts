/**
 * Builds MapResponse JSON from the state. Built for large tailnets: each node's peer JSON is
 * receiver-independent and cached until the node changes, so a full map is a string join of
 * cached fragments, and a delta fragment is built once and shared by every receiver.
 */
import type { Config, DnsExtraRecord } from "../config/config.ts";
import type { NodeRecord, UserRecord } from "../store/types.ts";
import type {
  CapMap,
  DERPMap,
  DNSConfig,
  MapResponse,
  Node,
  PeerChange,
  SSHPolicy,
  UserProfile,
} from "../tailcfg/types.ts";
import { type Json, jsonArray, jsonKey, jsonMembers, toJson } from "../tailcfg/json.ts";
import { buildDnsConfig, usesNextDns, withNextDnsMetadata } from "../dns/dns_config.ts";
import { type Change, isStatusPatch, type NodePatch, PATCH_FIELDS } from "../state/events.ts";
import { peerNode } from "./node_view.ts";
import { allowAllPolicy, type PolicyView } from "./policy_view.ts";
import { frameParts, SharedMessage } from "./framing.ts";
import { type FilterChunk, FilterChunker, packetFiltersJson } from "./filter_chunks.ts";
import { type Chunk, PeerChunks, type Volatile, zstd } from "./peer_chunks.ts";
import { TAGGED_DEVICES, TAGGED_DEVICES_USER_ID, userProfile, wireUserId } from "./users.ts";

/** What the mapper reads from the state (State satisfies it). */
export interface MapSource {
  getNode(id: number): NodeRecord | undefined;
  getUser(id: number): UserRecord | undefined;
  listNodes(): NodeRecord[];
  isOnline(id: number): boolean;
  primaryRoutesOf(id: number): readonly string[];
  capVersionOf(id: number): number | undefined;
}

export interface MapperDeps {
  state: MapSource;
  config:
    & Pick<Config, "dns" | "prefixes" | "taildropEnabled">
    & Partial<Pick<Config, "logtailEnabled" | "autoUpdateEnabled">>;
  /** Defaults to allow-all. */
  policy?: PolicyView;
  derpMap: () => DERPMap;
  /** Current extra DNS records (hot-reloaded file); defaults to the configured list. */
  extraRecords?: () => readonly DnsExtraRecord[];
  now?: () => Date;
}

export const CAP_FILE_SHARING = "https://tailscale.com/cap/file-sharing";
/** tailcfg.NodeAttrDefaultAutoUpdate: the value is the tailnet's auto-update default. */
export const CAP_DEFAULT_AUTO_UPDATE = "default-auto-update";
export const CAP_SSH = "https://tailscale.com/cap/ssh";
/** tailcfg.CapabilityAdmin: clients word some health messages for admins with it. */
export const CAP_ADMIN = "https://tailscale.com/cap/is-admin";
/** An SSHPolicy that replaces an earlier one with nothing. */
export const NO_SSH_POLICY = '{"rules":[]}' as Json<SSHPolicy>;

/** The tailcfg.PeerChange for a patch: every field PATCH_FIELDS lists (../state/events.ts). */
export function peerChangeJson(nodeId: number, p: NodePatch): Json<PeerChange> {
  const change: Record<string, unknown> = { NodeID: nodeId };
  for (const [field, wireName] of PATCH_FIELDS) {
    const value = p[field];
    if (value === undefined || value === null || value === "" || value === 0) continue;
    change[wireName] = value instanceof Date ? value.toISOString() : value;
  }
  return JSON.stringify(change) as Json<PeerChange>;
}

/** The patch from `was` to `now`, or null when a client would see no difference. */
function volatileDiff(was: Volatile, now: Volatile): NodePatch | null {
  const patch: NodePatch = {};
  let any = false;
  if (was.online !== now.online) {
    patch.online = now.online;
    any = true;
  }
  if (now.lastSeen && now.lastSeen.getTime() !== was.lastSeen?.getTime()) {
    patch.lastSeen = now.lastSeen;
    any = true;
  }
  if (now.cap !== undefined && now.cap !== was.cap) {
    patch.capVersion = now.cap;
    any = true;
  }
  return any ? patch : null;
}

export class Mapper {
  private readonly chunks: PeerChunks = new PeerChunks(this, 128, 8);
  /**
   * The same peers in slices of 16, for the receiving node's own range of 128: the slice that
   * holds the node must be compressed without it for every full map, and 16 peers cost an eighth
   * of 128 (10,000 full maps in a storm each compressed 127 peers of their own).
   */
  private readonly smallChunks: PeerChunks = new PeerChunks(this, 16, 2);
  /** Per node: its peer JSON and wire user id, until the node changes. */
  private readonly peerJson = new Map<
    number,
    { json: Json<Node>; user: number; volatile: Volatile }
  >();
  private readonly profileJson = new Map<number, Json<UserProfile>>();
  /** Packet filters in named chunks, shared with the sessions' policy bookkeeping. */
  private readonly filterChunker = new FilterChunker();
  private sortedIds: number[] | null = null;
  private derpCache: { map: DERPMap; json: Json<DERPMap> } | null = null;
  private dnsCache: { cfg: DNSConfig; json: Json<DNSConfig>; perNode: boolean } | null = null;
  private readonly now: () => Date;
  private policyView: PolicyView;

  constructor(private readonly deps: MapperDeps) {
    this.now = deps.now ?? (() => new Date());
    this.policyView = deps.policy ?? allowAllPolicy(() => this.nodeIds());
  }

  /** The node's packet filter in named chunks (lib/mapper/filter_chunks.ts). */
  filterChunks(nodeId: number): FilterChunk[] {
    return this.filterChunker.chunks(this.policy.filterFor(nodeId));
  }

  get policy(): PolicyView {
    return this.policyView;
  }

  /**
   * Swaps the policy; the caller announces policy-changed, and the notifier then sends each
   * session what changed for it (see PolicySync).
   */
  setPolicy(policy: PolicyView): void {
    this.policyView = policy;
  }

  // ---- cache maintenance ------------------------------------------------------------------

  /** Drops what it cached about what changed; called for every batch of State events. */
  apply(changes: readonly Change[]): void {
    for (const c of changes) {
      switch (c.kind) {
        case "node-added":
        case "node-removed":
          this.membershipChanged(c.nodeId);
          break;
        case "node-patched":
          if (isStatusPatch(c.patch)) {
            this.peerJson.delete(c.nodeId);
            this.chunks.volatileChanged(c.nodeId);
            this.smallChunks.volatileChanged(c.nodeId);
          } else this.invalidateNode(c.nodeId);
          break;
        case "node-updated":
        case "node-expired":
        case "primary-routes-changed":
          this.invalidateNode(c.nodeId);
          break;
        case "user-updated":
          this.invalidateUser(c.userId);
          break;
        case "derp-map-changed":
          this.invalidateDerpMap();
          break;
        case "dns-changed":
          this.invalidateDns();
          break;
        case "policy-changed":
          break; // Nothing cached depends on the policy (filters are the engine's).
      }
    }
  }

  /** All node ids, ascending. */
  nodeIds(): readonly number[] {
    this.sortedIds ??= this.deps.state.listNodes().map((n) => n.id);
    return this.sortedIds;
  }

  /** Forget the node's cached JSON (it changed). */
  invalidateNode(id: number): void {
    this.peerJson.delete(id);
    this.chunks.invalidate(id);
    this.smallChunks.invalidate(id);
  }

  /** A node joined or left: the id list changes too. */
  membershipChanged(id: number): void {
    this.peerJson.delete(id);
    this.chunks.membershipChanged(id);
    this.smallChunks.membershipChanged(id);
    this.sortedIds = null;
  }

  invalidateUser(userId: number): void {
    this.profileJson.delete(userId);
  }

  invalidateDerpMap(): void {
    this.derpCache = null;
  }

  invalidateDns(): void {
    this.dnsCache = null;
  }

  // ---- fragments ----------------------------------------------------------------------------

  private nodeView(node: NodeRecord): Node {
    return peerNode(node, {
      baseDomain: this.deps.config.dns.baseDomain,
      now: this.now(),
      online: this.deps.state.isOnline(node.id),
      capVer: this.deps.state.capVersionOf(node.id),
      primaryRoutes: this.deps.state.primaryRoutesOf(node.id),
    });
  }

  /** What a PeerChange could update about a node, as its peer JSON shows it now. */
  private volatileOf(node: NodeRecord): Volatile {
    const online = this.deps.state.isOnline(node.id);
    return {
      online,
      lastSeen: !online && node.lastSeen ? node.lastSeen : null,
      cap: this.deps.state.capVersionOf(node.id) || undefined,
    };
  }

  /** A node's cached peer JSON, wire user and volatile values, or null when it is gone. */
  peerEntry(id: number): { json: Json<Node>; user: number; volatile: Volatile } | null {
    let entry = this.peerJson.get(id);
    if (entry === undefined) {
      const node = this.deps.state.getNode(id);
      if (!node) return null;
      entry = {
        json: toJson(this.nodeView(node)),
        user: wireUserId(node),
        volatile: this.volatileOf(node),
      };
      this.peerJson.set(id, entry);
    }
    return entry;
  }

  /** The node's peer JSON (cached), or null when it does not exist. */
  peerJsonOf(id: number): Json<Node> | null {
    return this.peerEntry(id)?.json ?? null;
  }

  /** The profile JSON of a wire user id (tagged-devices included), or null if unknown. */
  profileJsonOf(userId: number): Json<UserProfile> | null {
    let json = this.profileJson.get(userId);
    if (json === undefined) {
      const user = userId === TAGGED_DEVICES_USER_ID
        ? TAGGED_DEVICES
        : this.deps.state.getUser(userId);
      if (!user) return null;
      json = toJson(userProfile(user));
      this.profileJson.set(userId, json);
    }
    return json;
  }

  wireUserOf(id: number): number | null {
    return this.peerEntry(id)?.user ?? null;
  }

  derpMapJson(): Json<DERPMap> {
    const map = this.deps.derpMap();
    if (this.derpCache?.map !== map) this.derpCache = { map, json: toJson(map) };
    return this.derpCache.json;
  }

  private dns(): { cfg: DNSConfig; json: Json<DNSConfig>; perNode: boolean } {
    if (!this.dnsCache) {
      const { dns, prefixes } = this.deps.config;
      const cfg = buildDnsConfig(dns, prefixes, this.deps.extraRecords?.() ?? dns.extraRecords);
      this.dnsCache = { cfg, json: toJson(cfg), perNode: usesNextDns(cfg) };
    }
    return this.dnsCache;
  }

  dnsIsPerNode(): boolean {
    return this.dns().perNode;
  }

  /** The DNSConfig JSON for a node (shared unless NextDNS needs per-device metadata). */
  dnsConfigJsonFor(node: NodeRecord): Json<DNSConfig> {
    const d = this.dns();
    if (!d.perNode) return d.json;
    return toJson(withNextDnsMetadata(d.cfg, {
      hostname: node.hostname,
      os: typeof node.hostinfo?.OS === "string" ? node.hostinfo.OS : "",
      ip: node.ipv4 ?? node.ipv6,
    }));
  }

  /**
   * The node's own capabilities, headscale v0.29's baseline: admin and Tailscale SSH for every
   * node (the SSH policy decides who gets in; without the capability `tailscale set --ssh` is
   * refused, "not enabled on Tailnet"), Taildrop when enabled, the tailnet's auto-update default
   * (true or false), then the policy's nodeAttrs over them.
   */
  selfCapMap(nodeId: number): CapMap {
    const capMap: CapMap = { [CAP_ADMIN]: [], [CAP_SSH]: [] };
    if (this.deps.config.taildropEnabled) capMap[CAP_FILE_SHARING] = [];
    capMap[CAP_DEFAULT_AUTO_UPDATE] = [this.deps.config.autoUpdateEnabled ?? false];
    Object.assign(capMap, this.policyView.nodeCapMap?.(nodeId) ?? {});
    return capMap;
  }

  /** The node as it sees itself: its peer view plus its own capabilities. */
  selfNode(node: NodeRecord): Node {
    const self = this.nodeView(node);
    self.Machine = node.machineKey;
    const capMap = this.selfCapMap(node.id);
    if (Object.keys(capMap).length > 0) self.CapMap = capMap;
    return self;
  }

  /**
   * The last message to a deleted node: itself with a dead key, so the client asks for a login
   * again (as with Tailscale's own control server; a bare close would only make it retry).
   */
  farewellMessage(node: NodeRecord): SharedMessage {
    const self = this.selfNode(node);
    self.KeyExpiry = new Date(this.now().getTime() - 1_000).toISOString();
    self.Expired = true;
    return new SharedMessage(toJson<MapResponse>({ Node: self }));
  }

  selfNodeJson(id: number): Json<Node> | null {
    const node = this.deps.state.getNode(id);
    return node ? toJson(this.selfNode(node)) : null;
  }

  /** The ids `nodeId` sees, ascending, without itself. */
  peerIdsOf(nodeId: number): number[] {
    const ids: number[] = [];
    let sorted = true;
    for (const id of this.policyView.peersOf(nodeId)) {
      if (id === nodeId) continue;
      if (ids.length > 0 && id < ids[ids.length - 1]) sorted = false;
      ids.push(id);
    }
    if (!sorted) ids.sort((a, b) => a - b);
    return ids;
  }

  /**
   * The parts of a full map around the peer list: `head` ends with `"Peers":[`, `tail` starts
   * with `]`. With `resync` (a later full map on a running stream) an empty peer list is
   * spelled as PeersRemoved, since the client reads `Peers: []` as "no change".
   */
  private fullMapFrame(
    node: NodeRecord,
    users: Set<number>,
    peerCount: number,
    resync: boolean,
  ): { head: string; tail: string } {
    const policy = this.policyView;
    users.add(wireUserId(node));
    const profiles: Json<UserProfile>[] = [];
    for (const uid of users) {
      const json = this.profileJsonOf(uid);
      if (json !== null) profiles.push(json);
    }
    const head = "{" + jsonMembers<MapResponse>({
      Node: toJson(this.selfNode(node)),
      DERPMap: this.derpMapJson(),
    }).join(",") + "," + jsonKey<MapResponse>("Peers") + "[";
    const others = resync && peerCount === 0 ? this.nodeIds().filter((id) => id !== node.id) : [];
    const ssh = policy.sshPolicyFor(node.id);
    const tail = [
      "]",
      ...jsonMembers<MapResponse>({
        PeersRemoved: others.length > 0 ? toJson(others as number[]) : undefined,
        DNSConfig: this.dnsConfigJsonFor(node),
        Domain: toJson(this.deps.config.dns.baseDomain),
        CollectServices: toJson(false),
        // In named chunks; "*" first drops whatever the client held (a resync, or nothing).
        PacketFilters: packetFiltersJson(this.filterChunks(node.id), [], true),
        // The client keeps its last SSH policy when the field is absent: a resync must clear it.
        SSHPolicy: ssh ? toJson(ssh) : resync ? NO_SSH_POLICY : undefined,
        UserProfiles: jsonArray(profiles),
        ControlTime: toJson(this.now().toISOString()),
        Debug: toJson({ DisableLogTail: !this.deps.config.logtailEnabled }),
      }).map((member) => "," + member),
      "}",
    ];
    return { head, tail: tail.join("") };
  }

  /** The full MapResponse for a node as JSON, or null if the node is gone. */
  fullMapJson(nodeId: number, opts: { resync?: boolean } = {}): string | null {
    const node = this.deps.state.getNode(nodeId);
    if (!node) return null;
    const peers: string[] = [];
    const users = new Set<number>();
    for (const id of this.peerIdsOf(nodeId)) {
      const entry = this.peerEntry(id);
      if (entry === null) continue;
      peers.push(entry.json);
      users.add(entry.user);
    }
    const { head, tail } = this.fullMapFrame(node, users, peers.length, opts.resync ?? false);
    return head + peers.join(",") + tail;
  }

  /**
   * The full map as messages. When everyone sees everyone, its zstd frame reuses compressed
   * slices of the peer list (PeerChunks): only the node's own slice, the head and the tail are
   * compressed per call. Peers then come grouped by id range, own range first; the client
   * sorts them itself. A slice built before some of its nodes went on- or offline (or told their
   * capability version) still shows the old values: a second message patches them, since a
   * MapResponse with Peers may carry no other peer change. `fresh` (a one-shot map, of which a
   * client reads only the first message) builds one current message instead.
   */
  fullMapMessages(
    nodeId: number,
    opts: { resync?: boolean; fresh?: boolean } = {},
  ): SharedMessage[] | null {
    const node = this.deps.state.getNode(nodeId);
    if (!node) return null;
    const json = () => this.fullMapJson(nodeId, opts) ?? "{}";
    if (opts.fresh || !this.policyView.seesEveryone?.()) {
      const text = this.fullMapJson(nodeId, opts);
      return text === null ? null : [new SharedMessage(text)];
    }
    // The node's own small slice (built without it), the rest of its range in small slices,
    // then the other ranges.
    const big = this.chunks;
    const small = this.smallChunks;
    const ownRange = big.keyOf(nodeId);
    const ownSmall = small.keyOf(nodeId);
    const slices: { table: PeerChunks; key: number }[] = [];
    const perRange = big.size / small.size;
    for (let key = ownRange * perRange; key < (ownRange + 1) * perRange; key++) {
      if (key !== ownSmall) slices.push({ table: small, key });
    }
    for (const key of big.keys()) {
      if (key !== ownRange) slices.push({ table: big, key });
    }
    const first = small.build(ownSmall, nodeId);
    let firstJson = first.json;
    const users = new Set(first.users);
    let peerCount = first.ids.length;
    const used: Chunk[] = [];
    while (firstJson === "" && slices.length > 0) {
      const { table, key } = slices.shift()!;
      const c = table.build(key);
      firstJson = c.json;
      for (const u of c.users) users.add(u);
      peerCount += c.ids.length;
      used.push(c);
    }
    const middle: Uint8Array[] = [];
    for (const { table, key } of slices) {
      const c = table.build(key);
      if (c.ids.length === 0) continue;
      for (const u of c.users) users.add(u);
      peerCount += c.ids.length;
      middle.push(table.compressedWithComma(key));
      used.push(c);
    }
    const { head, tail } = this.fullMapFrame(node, users, peerCount, opts.resync ?? false);
    const map = new SharedMessage(
      json,
      frameParts([zstd(head + firstJson), ...middle, zstd(tail)]),
    );
    const patches: string[] = [];
    for (const c of used) {
      if (c.changed.size === 0) continue;
      c.patches ??= this.stalePatches(c);
      if (c.patches !== "") patches.push(c.patches);
    }
    if (patches.length === 0) return [map];
    const key = jsonKey<MapResponse>("PeersChangedPatch");
    return [map, new SharedMessage("{" + key + "[" + patches.join(",") + "]}")];
  }

  /** A slice's PeerChanges from what it shows to what is current, comma-joined (PeerChunks). */
  private stalePatches(c: Chunk): string {
    const out: Json<PeerChange>[] = [];
    for (const id of c.changed) {
      const was = c.baked.get(id);
      const node = this.deps.state.getNode(id);
      if (!was || !node) continue;
      const patch = volatileDiff(was, this.volatileOf(node));
      if (patch) out.push(peerChangeJson(id, patch));
    }
    return out.join(",");
  }
}
