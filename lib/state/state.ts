/**
 * The tailnet in memory: users, nodes, keys, and who is online. Every change is written to the
 * store first and applied here only after the write committed, then announced as typed change
 * events. Frequent soft updates (endpoints, hostinfo, last seen) are applied at once and written
 * in batches.
 */
import { createHash } from "node:crypto";
import type { Config } from "../config/config.ts";
import type { Logger } from "../log/log.ts";
import { parsePrefix } from "../net/ip.ts";
import { generateKey, parseKey, verifySecret } from "../auth/secrets.ts";
import type {
  ApiKeyRecord,
  NewNode,
  NodeRecord,
  PreAuthKeyRecord,
  RegisterMethod,
  Store,
  UserRecord,
} from "../store/types.ts";
import { StoreConflictError, StoreNotFoundError, StoreUnavailableError } from "../store/types.ts";
import { type Change, type ChangeListener, nodeChange, type NodePatch } from "./events.ts";
import { ExpiryWatch } from "./expiry_watch.ts";
import { PrimaryRoutes } from "./routes.ts";
import {
  AlreadyExistsError,
  ConflictError,
  InvalidArgumentError,
  KeyRejectedError,
  NotFoundError,
  UnavailableError,
} from "./errors.ts";
import { type Addresses, IpAllocator } from "./ip_allocator.ts";
import { dnsSafeName, uniqueName, validGivenName } from "./names.ts";
import type { MachineKey, NodeKey } from "../tailcfg/keys.ts";

export interface StateDeps {
  store: Store;
  log: Logger;
  config: Pick<Config, "prefixes" | "node" | "tuning">;
  now?: () => Date;
}

export interface CreateUserInput {
  name: string;
  displayName?: string;
  email?: string;
  pictureUrl?: string;
}

export interface CreatePreAuthKeyInput {
  userId: number | null;
  reusable: boolean;
  ephemeral: boolean;
  expiration: Date | null;
  tags: string[];
}

export interface RegisterInput {
  machineKey: MachineKey;
  nodeKey: NodeKey;
  hostname: string;
  hostinfo: Record<string, unknown> | null;
  userId: number | null;
  tags: string[];
  authKeyId: number | null;
  method: RegisterMethod;
  ephemeral: boolean;
  /** Requested key expiry; null = the server default (node.expiry). */
  expiry: Date | null;
}

/** What a map request may report about the node itself. */
export interface NodeReport {
  discoKey?: string;
  endpoints?: string[];
  hostinfo?: Record<string, unknown>;
}

const USER_NAME = /^[a-zA-Z0-9][a-zA-Z0-9._@+-]{0,62}$/;
const EMAIL = /^[^@\s]+@[^@\s]+$/;

/** 1-63 letters, digits and . _ - + @ (one @ at most), starting with a letter or digit. */
function validUserName(name: string): boolean {
  return USER_NAME.test(name) && name.split("@").length <= 2;
}
const TAG = /^tag:[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$/;

export function validateTags(tags: string[]): string[] {
  for (const tag of tags) {
    if (!TAG.test(tag)) {
      throw new InvalidArgumentError(`invalid tag "${tag}": tags look like tag:name`);
    }
  }
  return [...new Set(tags)].sort();
}

export function validateRoutes(routes: string[]): string[] {
  const out = new Set<string>();
  for (const route of routes) {
    const p = parsePrefix(route);
    if (!p || !route.includes("/")) {
      throw new InvalidArgumentError(`invalid route "${route}": expected a CIDR prefix`);
    }
    out.add(route);
  }
  return [...out].sort();
}

function homeDerpOf(hostinfo: Record<string, unknown> | null | undefined): number {
  const netInfo = hostinfo?.NetInfo as Record<string, unknown> | undefined;
  const region = netInfo?.PreferredDERP;
  return typeof region === "number" ? region : 0;
}

function sameList(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

/** Hostinfo fields that only move on the network (NetInfo): they reach peers as patches. */
function visibleHostinfo(h: Record<string, unknown> | null): string {
  if (!h) return "";
  const { NetInfo: _netInfo, ...rest } = h;
  return JSON.stringify(rest);
}

/** The fields map requests change in place (applyReport, streamClosed), written in batches. */
const SESSION_FIELDS = ["discoKey", "hostname", "hostinfo", "endpoints", "lastSeen"] as const;

function sessionFields(node: NodeRecord): Pick<NodeRecord, typeof SESSION_FIELDS[number]> {
  const { discoKey, hostname, hostinfo, endpoints, lastSeen } = node;
  return { discoKey, hostname, hostinfo, endpoints, lastSeen };
}

/** What backfillNodeIPs will write for one node. */
interface BackfillPlan {
  nodeId: number;
  ipv4: string | null;
  ipv6: string | null;
  /** Addresses taken from the allocator for this node (released if not written). */
  allocated: Addresses;
  changes: string[];
}

/** Go's %q for the strings headscale quotes (JSON escaping matches it for printable text). */
function goQuote(text: string): string {
  return JSON.stringify(text);
}

export class State {
  private readonly users = new Map<number, UserRecord>();
  private readonly nodes = new Map<number, NodeRecord>();
  /** The tail of each node's write queue (see serialiseNode). */
  private readonly nodeWrites = new Map<number, Promise<unknown>>();
  private readonly nodeIdByMachineKey = new Map<string, number>();
  private readonly nodeIdByNodeKey = new Map<string, number>();
  private readonly nodeIdByGivenName = new Map<string, number>();
  private readonly preAuthKeys = new Map<number, PreAuthKeyRecord>();
  private readonly apiKeys = new Map<number, ApiKeyRecord>();
  /** Open map streams per node: a node is online while it has one. */
  private readonly streams = new Map<number, number>();
  /** Counts each node's map streams ever opened: a probe outlived by a reconnect is void. */
  private readonly sessionEpochs = new Map<number, number>();
  /** Capability version of each node's last map request (memory only, as in headscale). */
  private readonly capVersions = new Map<number, number>();
  /** Which online router is primary for each subnet route. */
  private readonly routes = new PrimaryRoutes(this);
  /** Wakes up when the next node key expires; started with the first subscriber. */
  private expiry: ExpiryWatch | undefined;
  private readonly listeners = new Set<ChangeListener>();
  private readonly dirty = new Set<number>();
  /** sha256(api key) → key id, so a verified key skips the slow hash on later requests. */
  private readonly apiKeyCache = new Map<string, number>();
  private flushTimer: ReturnType<typeof setTimeout> | undefined;
  private flushing: Promise<void> = Promise.resolve();
  /** Batches that failed in a row; while > 0 the next try waits longer (see flush). */
  private flushFailures = 0;
  private closed = false;
  private readonly store: Store;
  private readonly log: Logger;
  private readonly config: StateDeps["config"];
  private readonly now: () => Date;
  readonly ips: IpAllocator;

  private constructor(deps: StateDeps) {
    this.store = deps.store;
    this.log = deps.log;
    this.config = deps.config;
    this.now = deps.now ?? (() => new Date());
    this.ips = new IpAllocator({
      v4: deps.config.prefixes.v4,
      v6: deps.config.prefixes.v6,
      strategy: deps.config.prefixes.allocation,
    });
  }

  /** Loads everything from the store into memory. */
  static async open(deps: StateDeps): Promise<State> {
    const state = new State(deps);
    const [users, nodes, authKeys, apiKeys] = await Promise.all([
      deps.store.listUsers(),
      deps.store.listNodes(),
      deps.store.listPreAuthKeys(),
      deps.store.listApiKeys(),
    ]);
    for (const u of users) state.users.set(u.id, u);
    for (const n of nodes) state.indexNode(n);
    for (const k of authKeys) state.preAuthKeys.set(k.id, k);
    for (const k of apiKeys) state.apiKeys.set(k.id, k);
    state.routes.update(state.nodes.keys());
    return state;
  }

  // ---- change events ------------------------------------------------------------------------

  subscribe(listener: ChangeListener): () => void {
    this.listeners.add(listener);
    this.expiry ??= new ExpiryWatch({
      listNodes: () => this.nodes.values(),
      now: this.now,
      onExpired: (ids) =>
        this.emit(...ids.map((nodeId): Change => ({ kind: "node-expired", nodeId }))),
    });
    return () => this.listeners.delete(listener);
  }

  /**
   * Announces changes, together with what follows from them in the state itself: a new primary
   * for a subnet route when a router came, went or changed, and the next key expiry to wake up
   * for.
   */
  private emit(...events: Change[]): void {
    const changes = [...events, ...this.consequences(events)];
    for (const listener of this.listeners) {
      try {
        listener(changes);
      } catch (e) {
        this.log.error("change listener failed", { error: e });
      }
    }
  }

  private consequences(events: readonly Change[]): Change[] {
    const routers: number[] = [];
    for (const c of events) {
      switch (c.kind) {
        case "node-added":
        case "node-updated":
          routers.push(c.nodeId);
          this.expiry?.noteExpiry(this.nodes.get(c.nodeId)?.expiry ?? null);
          break;
        case "node-patched":
          if (c.patch.online !== undefined) routers.push(c.nodeId);
          if (c.patch.keyExpiry) this.expiry?.noteExpiry(c.patch.keyExpiry);
          break;
        case "node-removed":
          routers.push(c.nodeId);
          break;
      }
    }
    if (routers.length === 0) return [];
    return this.routes.update(routers).map((nodeId) => ({
      kind: "primary-routes-changed",
      nodeId,
    }));
  }

  /** Announces a change that happened outside the state (policy, DERP map, DNS). */
  announce(change: Change): void {
    this.emit(change);
  }

  // ---- users --------------------------------------------------------------------------------

  listUsers(): UserRecord[] {
    return [...this.users.values()].sort((a, b) => a.id - b.id);
  }

  getUser(id: number): UserRecord | undefined {
    return this.users.get(id);
  }

  getUserByName(name: string): UserRecord | undefined {
    for (const u of this.users.values()) if (u.name === name) return u;
    return undefined;
  }

  /** Finds a user by id (digits) or by name. */
  findUser(ref: string | number): UserRecord {
    const user = typeof ref === "number" || /^\d+$/.test(ref)
      ? this.users.get(Number(ref))
      : this.getUserByName(ref);
    if (!user) throw new NotFoundError(`user ${ref} not found`);
    return user;
  }

  private checkUserName(name: string): void {
    if (!validUserName(name)) {
      throw new InvalidArgumentError(
        `invalid user name "${name}": use 1-63 letters, digits, and . _ - + @ (one @ at most), starting with a letter or digit`,
      );
    }
    if (this.getUserByName(name)) throw new AlreadyExistsError(`user "${name}" already exists`);
  }

  async createUser(input: CreateUserInput): Promise<UserRecord> {
    this.checkUserName(input.name);
    if (input.email && !EMAIL.test(input.email)) {
      throw new InvalidArgumentError(`invalid email "${input.email}"`);
    }
    const user = await this.write(() =>
      this.store.insertUser({
        name: input.name,
        displayName: input.displayName ?? "",
        email: input.email ?? "",
        providerId: "",
        provider: "",
        profilePicUrl: input.pictureUrl ?? "",
        createdAt: this.now(),
      })
    );
    this.users.set(user.id, user);
    return user;
  }

  /** The user an OpenID provider vouches for (issuer + subject), if one logged in before. */
  getUserByProviderId(providerId: string): UserRecord | undefined {
    if (providerId === "") return undefined;
    for (const u of this.users.values()) {
      if (u.provider === "oidc" && u.providerId === providerId) return u;
    }
    return undefined;
  }

  /**
   * An OIDC login: the user with this provider identifier (issuer + subject) gets the claims'
   * display name, e-mail and picture (`user-updated` when one changed); without one a user is
   * created. Never matched by name or e-mail: a user made with `users create`, or another
   * account with the same e-mail, is never taken over. A new user's name is the first of
   * `names` that is valid and free, else the first valid one with `-2`, `-3`, … appended.
   */
  async upsertOidcUser(input: {
    providerId: string;
    names: string[];
    displayName: string;
    email: string;
    profilePicUrl: string;
  }): Promise<UserRecord> {
    if (input.providerId === "") throw new InvalidArgumentError("an OIDC user needs an identifier");
    const email = EMAIL.test(input.email) ? input.email : "";
    const existing = this.getUserByProviderId(input.providerId);
    if (existing) {
      const next = {
        ...existing,
        displayName: input.displayName,
        email,
        profilePicUrl: input.profilePicUrl,
      };
      if (
        next.displayName === existing.displayName && next.email === existing.email &&
        next.profilePicUrl === existing.profilePicUrl
      ) return existing;
      await this.write(() => this.store.updateUser(next));
      this.users.set(next.id, next);
      this.emit({ kind: "user-updated", userId: next.id });
      return next;
    }
    const user = await this.write(() =>
      this.store.insertUser({
        name: this.freeUserName(input.names),
        displayName: input.displayName,
        email,
        providerId: input.providerId,
        provider: "oidc",
        profilePicUrl: input.profilePicUrl,
        createdAt: this.now(),
      })
    );
    this.users.set(user.id, user);
    return user;
  }

  private freeUserName(candidates: string[]): string {
    const valid = candidates.filter(validUserName);
    const free = valid.find((n) => !this.getUserByName(n));
    if (free) return free;
    const base = (valid[0] ?? "oidc-user").slice(0, 56);
    for (let i = 2;; i++) {
      const name = `${base}-${i}`;
      if (!this.getUserByName(name)) return name;
    }
  }

  async renameUser(id: number, newName: string): Promise<UserRecord> {
    const user = this.findUser(id);
    if (user.name === newName) return user;
    this.checkUserName(newName);
    const renamed = { ...user, name: newName };
    await this.write(() => this.store.updateUser(renamed));
    this.users.set(id, renamed);
    this.emit({ kind: "user-updated", userId: id });
    return renamed;
  }

  async deleteUser(id: number): Promise<void> {
    const user = this.findUser(id);
    for (const n of this.nodes.values()) {
      if (n.userId === id) {
        throw new ConflictError(`user "${user.name}" still owns nodes; delete them first`);
      }
    }
    await this.write(() => this.store.deleteUser(id));
    this.users.delete(id);
    // The database deletes the user's keys with it, and forgets them on nodes (ON DELETE SET NULL).
    for (const [keyId, key] of this.preAuthKeys) {
      if (key.userId !== id) continue;
      this.preAuthKeys.delete(keyId);
      for (const n of this.nodes.values()) if (n.authKeyId === keyId) n.authKeyId = null;
    }
  }

  // ---- pre-auth keys ------------------------------------------------------------------------

  listPreAuthKeys(userId?: number): PreAuthKeyRecord[] {
    return [...this.preAuthKeys.values()]
      .filter((k) => userId === undefined || k.userId === userId)
      .sort((a, b) => a.id - b.id);
  }

  getPreAuthKey(id: number): PreAuthKeyRecord {
    const key = this.preAuthKeys.get(id);
    if (!key) throw new NotFoundError(`pre-auth key ${id} not found`);
    return key;
  }

  /** Creates a key; returns the record and the full key, which is shown only now. */
  async createPreAuthKey(
    input: CreatePreAuthKeyInput,
  ): Promise<{ record: PreAuthKeyRecord; key: string }> {
    if (input.userId !== null) this.findUser(input.userId);
    const tags = validateTags(input.tags);
    if (input.userId === null && tags.length === 0) {
      throw new InvalidArgumentError("a pre-auth key needs a user or at least one tag");
    }
    if (input.expiration && input.expiration.getTime() <= this.now().getTime()) {
      throw new InvalidArgumentError("expiration must be in the future");
    }
    const secret = await generateKey("auth");
    const record = await this.write(() =>
      this.store.insertPreAuthKey({
        prefix: secret.prefix,
        hash: secret.hash,
        userId: input.userId,
        reusable: input.reusable,
        ephemeral: input.ephemeral,
        used: false,
        tags,
        expiration: input.expiration,
        createdAt: this.now(),
      })
    );
    this.preAuthKeys.set(record.id, record);
    return { record, key: secret.full };
  }

  async expirePreAuthKey(id: number): Promise<PreAuthKeyRecord> {
    const key = this.getPreAuthKey(id);
    const expired = { ...key, expiration: this.now() };
    await this.write(() => this.store.updatePreAuthKey(expired));
    this.preAuthKeys.set(id, expired);
    return expired;
  }

  async deletePreAuthKey(id: number): Promise<void> {
    this.getPreAuthKey(id);
    await this.write(() => this.store.deletePreAuthKey(id));
    this.preAuthKeys.delete(id);
    for (const n of this.nodes.values()) if (n.authKeyId === id) n.authKeyId = null;
  }

  /** Checks a pre-auth key for registration; throws KeyRejectedError saying why it is refused. */
  async checkPreAuthKey(full: string): Promise<PreAuthKeyRecord> {
    const parsed = parseKey(full, "auth");
    if (!parsed) throw new KeyRejectedError("invalid auth key");
    const key = [...this.preAuthKeys.values()].find((k) => k.prefix === parsed.prefix);
    if (!key || !(await verifySecret(parsed.secret, key.hash))) {
      throw new KeyRejectedError("invalid auth key");
    }
    if (key.expiration && key.expiration.getTime() <= this.now().getTime()) {
      throw new KeyRejectedError("auth key expired");
    }
    if (key.used && !key.reusable) throw new KeyRejectedError("auth key already used");
    return key;
  }

  // ---- API keys -----------------------------------------------------------------------------

  listApiKeys(): ApiKeyRecord[] {
    return [...this.apiKeys.values()].sort((a, b) => a.id - b.id);
  }

  findApiKey(ref: { id?: number; prefix?: string }): ApiKeyRecord {
    const key = ref.id !== undefined
      ? this.apiKeys.get(ref.id)
      : [...this.apiKeys.values()].find((k) => k.prefix === ref.prefix);
    if (!key) throw new NotFoundError(`API key ${ref.id ?? ref.prefix} not found`);
    return key;
  }

  async createApiKey(expiration: Date | null): Promise<{ record: ApiKeyRecord; key: string }> {
    if (expiration && expiration.getTime() <= this.now().getTime()) {
      throw new InvalidArgumentError("expiration must be in the future");
    }
    const secret = await generateKey("api");
    const record = await this.write(() =>
      this.store.insertApiKey({
        prefix: secret.prefix,
        hash: secret.hash,
        expiration,
        lastSeen: null,
        createdAt: this.now(),
      })
    );
    this.apiKeys.set(record.id, record);
    return { record, key: secret.full };
  }

  async expireApiKey(id: number): Promise<ApiKeyRecord> {
    const key = this.findApiKey({ id });
    const expired = { ...key, expiration: this.now() };
    await this.write(() => this.store.updateApiKey(expired));
    this.apiKeys.set(id, expired);
    return expired;
  }

  async deleteApiKey(id: number): Promise<void> {
    this.findApiKey({ id });
    await this.write(() => this.store.deleteApiKey(id));
    this.apiKeys.delete(id);
    for (const [digest, keyId] of this.apiKeyCache) {
      if (keyId === id) this.apiKeyCache.delete(digest);
    }
  }

  /** True when `full` is a current API key. Expiry and deletion are checked on every call. */
  async checkApiKey(full: string): Promise<boolean> {
    const parsed = parseKey(full, "api");
    if (!parsed) return false;
    const digest = createHash("sha256").update(full).digest("base64");
    let id = this.apiKeyCache.get(digest);
    if (id === undefined) {
      const key = [...this.apiKeys.values()].find((k) => k.prefix === parsed.prefix);
      if (!key || !(await verifySecret(parsed.secret, key.hash))) return false;
      id = key.id;
      this.apiKeyCache.set(digest, id);
    }
    const key = this.apiKeys.get(id);
    if (!key) return false;
    return !key.expiration || key.expiration.getTime() > this.now().getTime();
  }

  // ---- nodes --------------------------------------------------------------------------------

  listNodes(): NodeRecord[] {
    return [...this.nodes.values()].sort((a, b) => a.id - b.id);
  }

  get nodeCount(): number {
    return this.nodes.size;
  }

  /**
   * Nodes with a map stream open (isOnline), counted without listing them: `streams` holds a
   * node only while its count is above zero, and a deleted node leaves it.
   */
  get onlineCount(): number {
    return this.streams.size;
  }

  getNode(id: number): NodeRecord | undefined {
    return this.nodes.get(id);
  }

  findNode(id: number): NodeRecord {
    const node = this.nodes.get(id);
    if (!node) throw new NotFoundError(`node ${id} not found`);
    return node;
  }

  nodeByNodeKey(nodeKey: NodeKey): NodeRecord | undefined {
    const id = this.nodeIdByNodeKey.get(nodeKey);
    return id === undefined ? undefined : this.nodes.get(id);
  }

  nodeByMachineKey(machineKey: MachineKey): NodeRecord | undefined {
    const id = this.nodeIdByMachineKey.get(machineKey);
    return id === undefined ? undefined : this.nodes.get(id);
  }

  isOnline(id: number): boolean {
    return (this.streams.get(id) ?? 0) > 0;
  }

  /** The node's primary (non-exit) subnet routes, sorted. */
  primaryRoutesOf(id: number): readonly string[] {
    return this.routes.primaryRoutesOf(id);
  }

  /** Online routers sharing a prefix with another online router: what the HA prober pings. */
  haRouters(): number[] {
    return this.routes.haRouters();
  }

  /** Whether the HA prober last found the router answering (true when never probed). */
  isRouterHealthy(id: number): boolean {
    return this.routes.isHealthy(id);
  }

  /** How many map streams the node has opened (a new one each reconnect). */
  sessionEpoch(id: number): number {
    return this.sessionEpochs.get(id) ?? 0;
  }

  /**
   * Applies one HA probe cycle's results (true: the router answered) at once; a router that did
   * not answer loses its primary routes, one that answers again does not take them back.
   * Returns whether any primary changed (peers then get the routers' new AllowedIPs).
   */
  setRouterHealth(results: ReadonlyMap<number, boolean>): boolean {
    const changed = this.routes.setHealth(results);
    if (changed.length === 0) return false;
    this.emit(...changed.map((nodeId): Change => ({ kind: "primary-routes-changed", nodeId })));
    return true;
  }

  /** The capability version of the node's last map request, if any. */
  capVersionOf(id: number): number | undefined {
    return this.capVersions.get(id);
  }

  /** Records the capability version a map request carried; peers learn it as a patch. */
  noteCapVersion(id: number, capVersion: number): void {
    if (!this.nodes.has(id) || this.capVersions.get(id) === capVersion) return;
    this.capVersions.set(id, capVersion);
    this.emit({ kind: "node-patched", nodeId: id, patch: { capVersion } });
  }

  isExpired(node: NodeRecord): boolean {
    return node.expiry !== null && node.expiry.getTime() <= this.now().getTime();
  }

  private indexNode(n: NodeRecord): void {
    this.nodes.set(n.id, n);
    this.nodeIdByMachineKey.set(n.machineKey, n.id);
    this.nodeIdByNodeKey.set(n.nodeKey, n.id);
    this.nodeIdByGivenName.set(n.givenName, n.id);
    this.ips.markUsed(n);
  }

  private unindexNode(n: NodeRecord): void {
    this.nodes.delete(n.id);
    if (this.nodeIdByMachineKey.get(n.machineKey) === n.id) {
      this.nodeIdByMachineKey.delete(n.machineKey);
    }
    if (this.nodeIdByNodeKey.get(n.nodeKey) === n.id) this.nodeIdByNodeKey.delete(n.nodeKey);
    if (this.nodeIdByGivenName.get(n.givenName) === n.id) {
      this.nodeIdByGivenName.delete(n.givenName);
    }
    this.ips.release(n);
  }

  private replaceNode(before: NodeRecord, after: NodeRecord): void {
    this.unindexNode(before);
    this.indexNode(after);
  }

  private freeName(base: string, selfId?: number): string {
    return uniqueName(base, (name) => {
      const owner = this.nodeIdByGivenName.get(name);
      return owner !== undefined && owner !== selfId;
    });
  }

  private defaultExpiry(requested: Date | null, tagged: boolean): Date | null {
    if (tagged) return null; // Tagged nodes never expire, as in headscale.
    if (requested && requested.getTime() > this.now().getTime()) return requested;
    const ms = this.config.node.expiryMs;
    return ms > 0 ? new Date(this.now().getTime() + ms) : null;
  }

  /**
   * Registers a machine, or re-registers a known one: a machine key seen before keeps its node id
   * and addresses. The pre-auth key is marked used in the same transaction.
   */
  async registerNode(input: RegisterInput): Promise<NodeRecord> {
    if (input.userId !== null) this.findUser(input.userId);
    const tags = validateTags(input.tags);
    const existing = this.nodeByMachineKey(input.machineKey);
    const otherWithKey = this.nodeByNodeKey(input.nodeKey);
    if (otherWithKey && otherWithKey.machineKey !== input.machineKey) {
      throw new ConflictError("node key belongs to another machine");
    }
    const now = this.now();
    const tagged = tags.length > 0;
    const useKeyId = input.authKeyId ?? undefined;

    if (existing) {
      const saved = await this.updateNode(existing.id, (node) => ({
        ...node,
        nodeKey: input.nodeKey,
        hostname: input.hostname || node.hostname,
        hostinfo: input.hostinfo ?? node.hostinfo,
        userId: tagged ? null : input.userId,
        tags,
        authKeyId: input.authKeyId ?? node.authKeyId,
        registerMethod: input.method,
        ephemeral: input.ephemeral,
        expiry: this.defaultExpiry(input.expiry, tagged),
        updatedAt: now,
      }), useKeyId);
      this.markKeyUsed(useKeyId);
      this.emit({ kind: "node-updated", nodeId: saved.id });
      return saved;
    }

    const addrs = this.ips.allocate();
    const givenName = this.freeName(dnsSafeName(input.hostname));
    const fresh: NewNode = {
      machineKey: input.machineKey,
      nodeKey: input.nodeKey,
      discoKey: "",
      ipv4: addrs.ipv4,
      ipv6: addrs.ipv6,
      hostname: input.hostname,
      givenName,
      userId: tagged ? null : input.userId,
      tags,
      authKeyId: input.authKeyId,
      registerMethod: input.method,
      ephemeral: input.ephemeral,
      hostinfo: input.hostinfo,
      endpoints: [],
      approvedRoutes: [],
      expiry: this.defaultExpiry(input.expiry, tagged),
      lastSeen: null,
      createdAt: now,
      updatedAt: now,
    };
    // Reserve the name too, so a concurrent registration cannot take it while we write.
    this.nodeIdByGivenName.set(givenName, -1);
    let saved: NodeRecord;
    try {
      saved = await this.write(() => this.store.saveNode(fresh, useKeyId));
    } catch (e) {
      this.ips.release(addrs);
      throw e;
    } finally {
      if (this.nodeIdByGivenName.get(givenName) === -1) this.nodeIdByGivenName.delete(givenName);
    }
    this.indexNode(saved);
    this.markKeyUsed(useKeyId);
    this.emit({ kind: "node-added", nodeId: saved.id });
    return saved;
  }

  private markKeyUsed(id: number | undefined): void {
    if (id === undefined) return;
    // As the store does: a reusable key is never marked used.
    const key = this.preAuthKeys.get(id);
    if (key && !key.used && !key.reusable) this.preAuthKeys.set(id, { ...key, used: true });
  }

  /**
   * Runs `fn` after every earlier write of node `id` has finished, so each write starts from the
   * record the previous one left (two admin edits of one node must not undo each other).
   */
  private serialiseNode<T>(id: number, fn: () => Promise<T>): Promise<T> {
    const run = (this.nodeWrites.get(id) ?? Promise.resolve()).then(fn);
    const tail = run.then(() => {}, () => {});
    this.nodeWrites.set(id, tail);
    void tail.then(() => {
      if (this.nodeWrites.get(id) === tail) this.nodeWrites.delete(id);
    });
    return run;
  }

  /**
   * Writes `change(current record)` in one transaction and installs it. What map requests
   * reported while the write was in flight (applyReport changes the record in place) is kept.
   */
  private updateNode(
    id: number,
    change: (node: NodeRecord) => NodeRecord,
    useKeyId?: number,
  ): Promise<NodeRecord> {
    return this.serialiseNode(id, async () => {
      const node = this.findNode(id);
      const reported = sessionFields(node);
      const saved = await this.write(() => this.store.saveNode(change(node), useKeyId));
      const latest = this.findNode(id);
      const installed = { ...saved };
      const now = sessionFields(latest);
      for (const field of SESSION_FIELDS) {
        if (now[field] !== reported[field]) Object.assign(installed, { [field]: now[field] });
      }
      this.replaceNode(latest, installed);
      return installed;
    });
  }

  /** Rotates the node key (the client sent OldNodeKey = current key). */
  async rotateNodeKey(id: number, nodeKey: NodeKey, expiry: Date | null): Promise<NodeRecord> {
    this.findNode(id);
    const other = this.nodeByNodeKey(nodeKey);
    if (other && other.id !== id) throw new ConflictError("node key belongs to another machine");
    const saved = await this.updateNode(id, (node) => ({
      ...node,
      nodeKey,
      expiry: this.defaultExpiry(expiry, node.tags.length > 0),
      updatedAt: this.now(),
    }));
    this.emit(nodeChange(id, { nodeKey, keyExpiry: saved.expiry }));
    return saved;
  }

  /** Sets the key expiry (null = never); a time in the past expires the node now. */
  async setNodeExpiry(id: number, expiry: Date | null): Promise<NodeRecord> {
    const saved = await this.updateNode(id, (node) => ({ ...node, expiry, updatedAt: this.now() }));
    this.emit({ kind: "node-updated", nodeId: id });
    return saved;
  }

  expireNode(id: number): Promise<NodeRecord> {
    return this.setNodeExpiry(id, this.now());
  }

  async renameNode(id: number, newName: string): Promise<NodeRecord> {
    const problem = validGivenName(newName);
    if (problem) throw new InvalidArgumentError(problem);
    this.findNode(id);
    const owner = this.nodeIdByGivenName.get(newName);
    if (owner !== undefined && owner !== id) {
      throw new AlreadyExistsError(`another node is already named "${newName}"`);
    }
    const saved = await this.updateNode(id, (node) => ({
      ...node,
      givenName: newName,
      updatedAt: this.now(),
    }));
    this.emit({ kind: "node-updated", nodeId: id });
    return saved;
  }

  /** Replaces the node's tags; a tagged node no longer belongs to a user. */
  async setNodeTags(id: number, tags: string[]): Promise<NodeRecord> {
    const clean = validateTags(tags);
    const node = this.findNode(id);
    if (clean.length === 0 && node.userId === null) {
      throw new InvalidArgumentError("a node without a user must keep at least one tag");
    }
    const saved = await this.updateNode(id, (current) => ({
      ...current,
      tags: clean,
      userId: clean.length > 0 ? null : current.userId,
      expiry: clean.length > 0 ? null : current.expiry,
      updatedAt: this.now(),
    }));
    this.emit({ kind: "node-updated", nodeId: id });
    return saved;
  }

  /**
   * Gives a user's node to another user (`nodes move`). A tagged node belongs to its tags, not
   * to a user: it is refused rather than silently untagged.
   */
  async moveNode(id: number, userId: number): Promise<NodeRecord> {
    const node = this.findNode(id);
    const user = this.findUser(userId);
    if (node.tags.length > 0) {
      throw new InvalidArgumentError(
        `node ${id} is tagged (${node.tags.join(", ")}); tagged nodes belong to no user`,
      );
    }
    if (node.userId === user.id) return node;
    const saved = await this.updateNode(id, (current) => ({
      ...current,
      userId: user.id,
      updatedAt: this.now(),
    }));
    this.emit({ kind: "node-updated", nodeId: id });
    return saved;
  }

  async setApprovedRoutes(id: number, routes: string[]): Promise<NodeRecord> {
    const clean = validateRoutes(routes);
    this.findNode(id);
    const saved = await this.updateNode(id, (node) => ({
      ...node,
      approvedRoutes: clean,
      updatedAt: this.now(),
    }));
    this.emit({ kind: "node-updated", nodeId: id });
    return saved;
  }

  /**
   * headscale's BackfillNodeIPs: gives every node an address in each configured prefix it lacks,
   * and drops its address of a family no prefix is configured for. Addresses outside the
   * configured prefix are left alone, as in headscale. Returns one line per change, in
   * headscale's words, for the nodes whose new addresses were written.
   *
   * Every address is allocated before the first write, so registrations running meanwhile can
   * never receive one of them, and an exhausted prefix fails before anything changes. Each node
   * is then written in its own transaction (the store has no multi-node save): if a write fails,
   * the nodes written before it keep their addresses and the rest are untouched, so running it
   * again finishes the job.
   */
  async backfillNodeIPs(): Promise<string[]> {
    const plans = this.planBackfill();
    const changes: string[] = [];
    const events: Change[] = [];
    try {
      for (let i = 0; i < plans.length; i++) {
        const plan = plans[i];
        if (!this.nodes.has(plan.nodeId)) { // Deleted since planning.
          this.ips.release(plan.allocated);
          continue;
        }
        try {
          await this.updateNode(plan.nodeId, (node) => ({
            ...node,
            ipv4: plan.ipv4,
            ipv6: plan.ipv6,
            updatedAt: this.now(),
          }));
        } catch (e) {
          if (this.nodes.has(plan.nodeId)) {
            for (const rest of plans.slice(i)) this.ips.release(rest.allocated);
            throw e;
          }
          this.ips.release(plan.allocated); // Deleted while we waited or wrote.
          continue;
        }
        changes.push(...plan.changes);
        events.push({ kind: "node-updated", nodeId: plan.nodeId });
      }
    } finally {
      if (events.length > 0) this.emit(...events);
    }
    return changes;
  }

  /** Decides every node's addresses and allocates the new ones (synchronously, all or none). */
  private planBackfill(): BackfillPlan[] {
    const plans: BackfillPlan[] = [];
    const allocated: Addresses[] = [];
    try {
      for (const node of this.listNodes()) {
        const plan: BackfillPlan = {
          nodeId: node.id,
          ipv4: node.ipv4,
          ipv6: node.ipv6,
          allocated: { ipv4: null, ipv6: null },
          changes: [],
        };
        allocated.push(plan.allocated);
        const who = `Node(${node.id}) ${goQuote(node.hostname)}`;
        for (const family of [4, 6] as const) {
          const field = family === 4 ? "ipv4" : "ipv6";
          if (this.ips.has(family) && plan[field] === null) {
            const ip = this.ips.allocateOne(family);
            plan[field] = plan.allocated[field] = ip;
            plan.changes.push(`assigned IPv${family} ${goQuote(ip)} to ${who}`);
          }
        }
        for (const family of [4, 6] as const) {
          const field = family === 4 ? "ipv4" : "ipv6";
          const ip = plan[field];
          if (!this.ips.has(family) && ip !== null) {
            plan.changes.push(`removing IPv${family} ${goQuote(ip)} from ${who}`);
            plan[field] = null;
          }
        }
        if (plan.changes.length > 0) plans.push(plan);
      }
    } catch (e) {
      for (const a of allocated) this.ips.release(a);
      throw e;
    }
    return plans;
  }

  async deleteNode(id: number): Promise<NodeRecord> {
    this.findNode(id);
    return await this.serialiseNode(id, async () => {
      this.findNode(id); // A delete queued behind another finds nothing left.
      await this.write(() => this.store.deleteNode(id));
      const node = this.findNode(id);
      this.unindexNode(node);
      this.dirty.delete(id);
      this.streams.delete(id);
      this.sessionEpochs.delete(id);
      this.routes.clearHealth(id);
      this.capVersions.delete(id);
      this.emit({ kind: "node-removed", nodeId: id, node });
      return node;
    });
  }

  /**
   * Applies what a map request reports (disco key, endpoints, hostinfo). Peers hear about it as
   * a patch when a PeerChange can carry it, as a full node otherwise. Written in the next batch.
   */
  applyReport(id: number, report: NodeReport): void {
    const node = this.nodes.get(id);
    if (!node) return;
    const patch: NodePatch = {};
    let full = false;
    if (report.discoKey !== undefined && report.discoKey !== node.discoKey) {
      node.discoKey = patch.discoKey = report.discoKey;
    }
    if (report.endpoints !== undefined && !sameList(report.endpoints, node.endpoints)) {
      node.endpoints = patch.endpoints = report.endpoints;
    }
    if (report.hostinfo !== undefined) {
      const derpBefore = homeDerpOf(node.hostinfo);
      const derpAfter = homeDerpOf(report.hostinfo);
      if (derpAfter !== derpBefore) patch.homeDerp = derpAfter;
      if (visibleHostinfo(report.hostinfo) !== visibleHostinfo(node.hostinfo)) full = true;
      node.hostinfo = report.hostinfo;
      const hostname = report.hostinfo.Hostname;
      if (typeof hostname === "string" && hostname !== "" && hostname !== node.hostname) {
        node.hostname = hostname;
        full = true;
      }
    }
    if (!full && Object.keys(patch).length === 0) return;
    node.updatedAt = this.now();
    this.markDirty(id);
    this.emit(full ? { kind: "node-updated", nodeId: id } : nodeChange(id, patch));
  }

  /** Counts map streams; the first opens the node, the last closing marks it offline. */
  streamOpened(id: number): void {
    const n = (this.streams.get(id) ?? 0) + 1;
    this.streams.set(id, n);
    this.sessionEpochs.set(id, this.sessionEpoch(id) + 1);
    // A reconnect proves the node is alive: an HA probe's unhealthy mark goes (as headscale).
    this.routes.clearHealth(id);
    if (n === 1) this.emit({ kind: "node-patched", nodeId: id, patch: { online: true } });
  }

  streamClosed(id: number): void {
    const n = (this.streams.get(id) ?? 0) - 1;
    if (n > 0) {
      this.streams.set(id, n);
      return;
    }
    this.streams.delete(id);
    this.routes.clearHealth(id);
    const node = this.nodes.get(id);
    if (!node) return;
    node.lastSeen = this.now();
    this.markDirty(id);
    this.emit({
      kind: "node-patched",
      nodeId: id,
      patch: { online: false, lastSeen: node.lastSeen },
    });
  }

  // ---- durability ---------------------------------------------------------------------------

  private markDirty(id: number): void {
    this.dirty.add(id);
    // A full batch goes at once, unless the database is failing: then the retry timer paces it.
    if (this.dirty.size >= this.config.tuning.nodeStoreBatchSize && this.flushFailures === 0) {
      void this.flush();
    } else {
      this.scheduleFlush(this.config.tuning.nodeStoreBatchTimeoutMs);
    }
  }

  private scheduleFlush(delayMs: number): void {
    if (this.flushTimer !== undefined || this.closed) return;
    this.flushTimer = setTimeout(() => {
      this.flushTimer = undefined;
      void this.flush();
    }, delayMs);
  }

  /** How long to wait before retrying after `failures` failed batches: doubling, at most 30 s. */
  private retryDelayMs(failures: number): number {
    const base = Math.max(100, this.config.tuning.nodeStoreBatchTimeoutMs);
    return Math.min(30_000, base * 2 ** Math.min(failures - 1, 10));
  }

  /**
   * Writes the batched soft updates now. A batch that fails is not dropped: its nodes are marked
   * dirty again (the retry writes their latest values) and retried with a growing delay until
   * the database takes it; each failure and the recovery are logged.
   */
  flush(): Promise<void> {
    if (this.flushTimer !== undefined) {
      clearTimeout(this.flushTimer);
      this.flushTimer = undefined;
    }
    const batch = [...this.dirty].map((id) => this.nodes.get(id)).filter((n) => n !== undefined);
    this.dirty.clear();
    if (batch.length === 0) return this.flushing;
    const snapshot = batch.map((n) => ({ ...n }));
    this.flushing = this.flushing.then(() => this.store.updateNodes(snapshot)).then(() => {
      if (this.flushFailures > 0) {
        this.log.info("node updates written again", { failed_batches: this.flushFailures });
        this.flushFailures = 0;
      }
    }, (e) => {
      this.flushFailures++;
      for (const n of snapshot) if (this.nodes.has(n.id)) this.dirty.add(n.id);
      const retryMs = this.retryDelayMs(this.flushFailures);
      this.log.error("writing node updates failed; will retry", {
        error: (e as Error)?.message ?? e,
        nodes: this.dirty.size,
        attempt: this.flushFailures,
        retry_in_ms: this.closed ? null : retryMs,
      });
      this.scheduleFlush(retryMs);
    });
    return this.flushing;
  }

  /** Nodes whose latest endpoints, hostinfo or last-seen are not in the database yet. */
  get unwrittenNodeCount(): number {
    return this.dirty.size;
  }

  async close(): Promise<void> {
    this.expiry?.close();
    await this.flush();
    this.closed = true;
    if (this.flushTimer !== undefined) clearTimeout(this.flushTimer);
    this.flushTimer = undefined;
    if (this.dirty.size > 0) {
      this.log.error("closing with node updates the database did not take", {
        nodes: this.dirty.size,
      });
    }
    this.listeners.clear();
  }

  /** Runs a store write, turning store errors into the state layer's errors. */
  private async write<T>(fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (e) {
      if (e instanceof StoreConflictError) {
        throw e.duplicate ? new AlreadyExistsError(e.message) : new ConflictError(e.message);
      }
      if (e instanceof StoreNotFoundError) throw new NotFoundError(e.message);
      if (e instanceof StoreUnavailableError) {
        throw new UnavailableError(`database unavailable: ${e.message}`, { cause: e });
      }
      throw e;
    }
  }
}
