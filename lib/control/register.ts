/**
 * `POST /machine/register` with headscale's semantics:
 *
 * 1. Expiry in the past = logout (the client sends 1970-01-01T00:02:03Z, maybe with Auth): the
 *    node is expired, or deleted when ephemeral.
 * 2. Followup = the AuthURL we gave: block until an admin approves or rejects the login.
 * 3. Auth.AuthKey = pre-auth key: register (or re-register: a known machine keeps its node id
 *    and addresses). A refused key is answered with RegisterResponse.Error, which the client
 *    shows verbatim ("backend error: auth key expired").
 * 4. No auth and a known node key: a restarting client; answer with the node's state, or
 *    NodeKeyExpired when its key expired (the client then rotates its key and logs in again).
 *    A future Expiry may shorten the key's life, never extend it.
 * 5. Otherwise an interactive login: answer with AuthURL `<server_url>/register/<id>`.
 *
 * Hostinfo.RequestTags (`tailscale up --advertise-tags`), as headscale v0.29.2 treats them: a
 * pre-auth key that would create a node refuses them (the key's own tags decide); an interactive
 * login registered for a user gets them when the policy's tagOwners give every one to that user
 * (the node is then tagged and owned by no user), and is refused otherwise (see registerApproved).
 *
 * Every lookup by node key is bound to the Noise peer's machine key: a node key registered to
 * another machine is refused with 401 (headscale's hole until 0.26.1).
 */
import type { Config } from "../config/config.ts";
import type { Logger } from "../log/log.ts";
import { parseKey, verifySecret } from "../auth/secrets.ts";
import type { State } from "../state/state.ts";
import { ConflictError, InvalidArgumentError, KeyRejectedError } from "../state/errors.ts";
import type { NodeRecord, PreAuthKeyRecord, UserRecord } from "../store/types.ts";
import type { Hostinfo, RegisterRequest, RegisterResponse } from "../tailcfg/types.ts";
import { isExpired } from "../mapper/node_view.ts";
import { registerIdentity, TAGGED_DEVICES } from "../mapper/users.ts";
import { isAuthId } from "../auth_requests/ids.ts";
import type { PendingAuths, RegistrationRequest } from "./pending_auths.ts";
import { HttpError } from "./http_util.ts";
import { sanitizeHostinfo, usableKey } from "./sanitize.ts";
import type { MachineKey, NodeKey } from "../tailcfg/keys.ts";

/** Whether the policy's tagOwners give `tag` to `user` (PolicyView.mayOwnTag). */
export type TagOwnerCheck = (
  user: { id: number; name: string; email?: string },
  tag: string,
) => boolean;

export interface RegisterDeps {
  state: State;
  /** Default: no tag is anyone's (what headscale answers without a policy). */
  mayOwnTag?: TagOwnerCheck;
  pendingAuths: PendingAuths;
  config: Pick<Config, "serverUrl"> & { node: Pick<Config["node"], "expiryMs"> };
  log: Logger;
  /** How long one Followup request blocks before the client is told to ask again. */
  followupWaitMs?: number;
  now?: () => Date;
}

const EMPTY_RESPONSE: RegisterResponse = {
  User: { ID: 0, DisplayName: "" },
  Login: { ID: 0, Provider: "", LoginName: "", DisplayName: "" },
  NodeKeyExpired: false,
  MachineAuthorized: false,
  AuthURL: "",
};

function response(fields: Partial<RegisterResponse>): RegisterResponse {
  return { ...EMPTY_RESPONSE, ...fields };
}

/** Parses the Expiry field: null when absent or zero; 400 when it is not a time. */
function requestedExpiry(text: unknown): Date | null {
  if (text === undefined || text === null || text === "") return null;
  if (typeof text !== "string") throw new HttpError(400, "Expiry must be an RFC 3339 time");
  if (text.startsWith("0001-01-01")) return null;
  const d = new Date(text);
  if (Number.isNaN(d.getTime())) throw new HttpError(400, "Expiry must be an RFC 3339 time");
  return d;
}

function hostnameOf(hostinfo: { Hostname?: string } | null): string {
  return hostinfo?.Hostname?.trim() || "node";
}

/** A requested expiry is honoured only when it is shorter than the server's default. */
export function allowedExpiry(requested: Date | null, now: Date, maxMs: number): Date | null {
  if (!requested || requested.getTime() <= now.getTime()) return null;
  return maxMs > 0 && requested.getTime() > now.getTime() + maxMs ? null : requested;
}

/** The tags the client asks for (Hostinfo.RequestTags), in its order. */
export function requestedTags(hostinfo: Hostinfo | null | undefined): string[] {
  const tags = hostinfo?.RequestTags;
  return Array.isArray(tags) ? tags.filter((t): t is string => typeof t === "string") : [];
}

/** headscale's wording: `requested tags [tag:a tag:b] are invalid or not permitted`. */
export function tagsRefused(tags: readonly string[]): string {
  return `requested tags [${tags.join(" ")}] are invalid or not permitted`;
}

function identity(user: UserRecord): { id: number; name: string; email?: string } {
  return { id: user.id, name: user.name, email: user.email || undefined };
}

/**
 * Who owns the node after an approved login, from the RequestTags the client sent (headscale's
 * createAndSaveNewNode / processReauthTags):
 * - registered for user U (`auth register --user U`, new or known machine): no RequestTags →
 *   U's node (a tagged node goes back to U); otherwise every tag must be U's per tagOwners, and
 *   the node is tagged with them.
 * - approved re-authentication (null user: keep the owner): a user's node stays theirs without
 *   RequestTags, or is tagged when tagOwners give every tag to that user. A tagged node has no
 *   user to vouch for new tags: it keeps its tags, or the requested ones when it holds them all.
 * Refused tags throw InvalidArgumentError naming them; nothing is written.
 */
function ownerAfterLogin(
  state: State,
  mayOwnTag: TagOwnerCheck,
  request: RegistrationRequest,
  userId: number | null,
  /** The machine's node; present whenever userId is null. */
  existing: NodeRecord | undefined,
): { userId: number | null; tags: string[] } {
  const requested = requestedTags(request.hostinfo);
  if (userId === null && existing && existing.tags.length > 0) {
    if (requested.length === 0) return { userId: null, tags: existing.tags };
    const refused = requested.filter((t) => !existing.tags.includes(t));
    if (refused.length > 0) {
      throw new InvalidArgumentError(
        `${tagsRefused(refused)}: this tagged node has no user whose tagOwners could grant ` +
          "them; register it for a user instead (auth register --user)",
      );
    }
    return { userId: null, tags: requested };
  }
  const ownerId = userId ?? existing!.userId!;
  if (requested.length === 0) return { userId: ownerId, tags: [] };
  const owner = state.getUser(ownerId);
  // An unknown user: registerNode refuses it with a clear NotFound.
  if (!owner) return { userId: ownerId, tags: [] };
  const refused = requested.filter((t) => !mayOwnTag(identity(owner), t));
  if (refused.length > 0) {
    throw new InvalidArgumentError(
      `${tagsRefused(refused)}: the policy's tagOwners do not give them to user "${owner.name}"`,
    );
  }
  return { userId: null, tags: requested };
}

/**
 * The registration of an approved interactive login (what PendingAuths runs). A null user keeps
 * the owner of the machine's existing node (re-authentication). RequestTags: see ownerAfterLogin.
 */
export function registerApproved(
  deps: Pick<RegisterDeps, "state" | "config" | "now" | "mayOwnTag">,
): (request: RegistrationRequest, userId: number | null) => Promise<NodeRecord> {
  const now = deps.now ?? (() => new Date());
  const mayOwnTag = deps.mayOwnTag ?? (() => false);
  return (request, userId) => {
    const existing = deps.state.nodeByMachineKey(request.machineKey);
    if (userId === null && !existing) {
      return Promise.reject(
        new InvalidArgumentError(
          "this machine has no node yet; register it for a user (auth register --user)",
        ),
      );
    }
    let owner: { userId: number | null; tags: string[] };
    try {
      owner = ownerAfterLogin(deps.state, mayOwnTag, request, userId, existing);
    } catch (e) {
      return Promise.reject(e);
    }
    return deps.state.registerNode({
      machineKey: request.machineKey,
      nodeKey: request.nodeKey,
      hostname: request.hostname,
      hostinfo: request.hostinfo,
      userId: owner.userId,
      tags: owner.tags,
      authKeyId: null,
      method: request.oidc ? "oidc" : "cli",
      ephemeral: request.ephemeral,
      expiry: request.oidc?.tokenExpiry ??
        allowedExpiry(request.expiry, now(), deps.config.node.expiryMs),
    });
  };
}

/**
 * Whether a pre-auth key re-registers the machine's node rather than creating one (headscale's
 * findExistingNodeForPAK): a key with a user matches that user's node or a tagged node; a key
 * with only tags matches any node. Only a registration that creates a node refuses RequestTags;
 * a re-registration ignores them, as headscale does.
 */
function reRegisters(key: PreAuthKeyRecord, existing: NodeRecord | undefined): boolean {
  if (!existing) return false;
  if (key.userId === null) return true;
  return existing.tags.length > 0 || existing.userId === key.userId;
}

export class RegisterService {
  private readonly now: () => Date;
  private readonly followupWaitMs: number;
  /** Single-use keys being registered right now: a second concurrent use is refused. */
  private readonly keysInFlight = new Set<number>();

  constructor(private readonly deps: RegisterDeps) {
    this.now = deps.now ?? (() => new Date());
    this.followupWaitMs = deps.followupWaitMs ?? 120_000;
  }

  /**
   * Handles one register request (already JSON-parsed) from the Noise peer `machineKey`.
   * Throws HttpError for requests that get a non-200 status.
   */
  async handle(
    req: RegisterRequest,
    machineKey: MachineKey,
    signal?: AbortSignal,
  ): Promise<RegisterResponse> {
    const { state } = this.deps;
    const nodeKey = usableKey(req.NodeKey, "nodekey:");
    if (!nodeKey) throw new HttpError(400, "NodeKey is missing or not a valid nodekey");
    const expiry = requestedExpiry(req.Expiry);
    const known = state.nodeByNodeKey(nodeKey);
    if (known && known.machineKey !== machineKey) {
      throw new HttpError(401, "node key is registered to a different machine key");
    }

    if (expiry && expiry.getTime() <= this.now().getTime()) {
      return known ? await this.logout(known) : response({ NodeKeyExpired: true });
    }
    if (typeof req.Followup === "string" && req.Followup !== "") {
      return await this.followup(req, req.Followup, nodeKey, machineKey, expiry, signal);
    }
    const authKey = req.Auth?.AuthKey;
    if (typeof authKey === "string" && authKey !== "") {
      return await this.withAuthKey(req, authKey, nodeKey, machineKey, expiry);
    }
    if (known) {
      if (isExpired(known, this.now())) return response({ NodeKeyExpired: true });
      if (!expiry) return this.success(known);
      if (known.expiry !== null && expiry.getTime() > known.expiry.getTime()) {
        throw new HttpError(400, "extending key is not allowed");
      }
      return this.success(await state.setNodeExpiry(known.id, expiry));
    }
    return this.interactive(req, nodeKey, machineKey, expiry);
  }

  private success(node: NodeRecord): RegisterResponse {
    const user = node.tags.length > 0 || node.userId === null
      ? TAGGED_DEVICES
      : this.deps.state.getUser(node.userId) ?? TAGGED_DEVICES;
    return response({
      ...registerIdentity(user),
      MachineAuthorized: true,
      NodeKeyExpired: isExpired(node, this.now()),
    });
  }

  private async logout(node: NodeRecord): Promise<RegisterResponse> {
    const { state, log } = this.deps;
    if (node.ephemeral) {
      await state.deleteNode(node.id);
      log.info("ephemeral node logged out and was deleted", { node: node.id });
      return response({ NodeKeyExpired: true });
    }
    // The client's sentinel time (1970) is stored as "now", as headscale does.
    const expired = isExpired(node, this.now()) ? node : await state.expireNode(node.id);
    log.info("node logged out", { node: node.id });
    return { ...this.success(expired), NodeKeyExpired: true };
  }

  private allowedExpiry(requested: Date | null): Date | null {
    return allowedExpiry(requested, this.now(), this.deps.config.node.expiryMs);
  }

  private async followup(
    req: RegisterRequest,
    url: string,
    nodeKey: NodeKey,
    machineKey: MachineKey,
    expiry: Date | null,
    signal?: AbortSignal,
  ): Promise<RegisterResponse> {
    let id: string;
    try {
      id = new URL(url).pathname.replace(/^.*\/register\//, "");
    } catch {
      throw new HttpError(400, "Followup is not a URL");
    }
    if (!isAuthId(id)) throw new HttpError(400, "Followup is not a login URL of this server");
    const outcome = await this.deps.pendingAuths.wait(id, machineKey, {
      timeoutMs: this.followupWaitMs,
      signal,
    });
    if (outcome === "timeout") return response({ AuthURL: url });
    if (outcome === "unknown") return this.interactive(req, nodeKey, machineKey, expiry);
    if (outcome.kind === "rejected") return response({ Error: outcome.reason });
    const node = this.deps.state.getNode(outcome.node.id);
    if (!node) return response({ Error: "the node was deleted; log in again" });
    return this.success(node);
  }

  private interactive(
    req: RegisterRequest,
    nodeKey: NodeKey,
    machineKey: MachineKey,
    expiry: Date | null,
  ): RegisterResponse {
    const hostinfo = sanitizeHostinfo(req.Hostinfo);
    const id = this.deps.pendingAuths.create({
      machineKey,
      nodeKey,
      hostname: hostnameOf(hostinfo),
      hostinfo,
      ephemeral: req.Ephemeral === true,
      expiry,
    });
    const base = this.deps.config.serverUrl.replace(/\/+$/, "");
    return response({ AuthURL: `${base}/register/${id}` });
  }

  /**
   * Checks the key; a single-use key that is already used is still accepted from the very
   * machine it registered (a client that logs in again with the same key keeps working).
   */
  private async acceptKey(authKey: string, machineKey: MachineKey): Promise<PreAuthKeyRecord> {
    const { state } = this.deps;
    try {
      return await state.checkPreAuthKey(authKey);
    } catch (e) {
      if (!(e instanceof KeyRejectedError)) throw e;
      const existing = state.nodeByMachineKey(machineKey);
      const parsed = parseKey(authKey, "auth");
      const record = existing?.authKeyId != null
        ? state.listPreAuthKeys().find((k) => k.id === existing.authKeyId)
        : undefined;
      const expired = record?.expiration && record.expiration.getTime() <= this.now().getTime();
      if (
        record && parsed && !expired && record.prefix === parsed.prefix &&
        await verifySecret(parsed.secret, record.hash)
      ) {
        return record;
      }
      throw e;
    }
  }

  private async withAuthKey(
    req: RegisterRequest,
    authKey: string,
    nodeKey: NodeKey,
    machineKey: MachineKey,
    expiry: Date | null,
  ): Promise<RegisterResponse> {
    const { state, log } = this.deps;
    let key: PreAuthKeyRecord;
    try {
      key = await this.acceptKey(authKey, machineKey);
    } catch (e) {
      if (e instanceof KeyRejectedError) {
        log.info("registration refused", { reason: e.message });
        return response({ Error: e.message });
      }
      throw e;
    }
    const sameMachine = state.nodeByMachineKey(machineKey)?.authKeyId === key.id;
    if (!key.reusable && !sameMachine) {
      // checkPreAuthKey awaited a hash: another registration may have used the key meanwhile.
      const fresh = state.listPreAuthKeys().find((k) => k.id === key.id);
      if (!fresh || fresh.used || this.keysInFlight.has(key.id)) {
        return response({ Error: "auth key already used" });
      }
    }
    const hostinfo = sanitizeHostinfo(req.Hostinfo);
    const requested = requestedTags(hostinfo);
    if (requested.length > 0 && !reRegisters(key, state.nodeByMachineKey(machineKey))) {
      // headscale answers 200 with this Error (its wrapping included); the client prints it.
      const reason = `handling register with auth key: ${tagsRefused(requested)}`;
      log.info("registration refused", { reason });
      return response({ Error: reason });
    }
    this.keysInFlight.add(key.id);
    try {
      const node = await state.registerNode({
        machineKey,
        nodeKey,
        hostname: hostnameOf(hostinfo),
        hostinfo,
        userId: key.userId,
        tags: key.tags,
        authKeyId: key.id,
        method: "authkey",
        ephemeral: key.ephemeral || req.Ephemeral === true,
        expiry: this.allowedExpiry(expiry),
      });
      log.info("node registered with a pre-auth key", { node: node.id, key: key.prefix });
      return this.success(node);
    } catch (e) {
      if (e instanceof ConflictError) throw new HttpError(401, e.message);
      throw e;
    } finally {
      this.keysInFlight.delete(key.id);
    }
  }
}
