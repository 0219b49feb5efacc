/**
 * HeadscaleService: the management API, implemented once over the in-memory state and served as
 * gRPC, gRPC-Web, Connect and REST. Validation happens here or in the state layer; state errors
 * become gRPC codes in one place (toConnectError).
 */
import { Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";
import { type Timestamp, timestampDate, timestampFromDate } from "@bufbuild/protobuf/wkt";
import { HeadscaleService } from "../../gen/headscale/v1/headscale_pb.ts";
import type { State } from "../state/state.ts";
import {
  AlreadyExistsError,
  ConflictError,
  InvalidArgumentError,
  KeyRejectedError,
  NotFoundError,
  UnavailableError,
} from "../state/errors.ts";
import type { NodeRecord } from "../store/types.ts";
import { PolicyInvalidError, PolicyModeError } from "../policy_manager/errors.ts";
import { AddressExhaustedError } from "../state/ip_allocator.ts";
import type { AuthRequests } from "../auth_requests/registry.ts";
import { apiKeyToProto, nodeToProto, preAuthKeyToProto, userToProto } from "./convert.ts";
import { debugNodeHandler, debugNodeToProto, newDebugRegistration } from "./debug_registrations.ts";
import type { AdminSessionRecord, AuditEventRecord } from "../store/types.ts";

/** The admin web UI's sign-in links, sessions and audit log (lib/ui/app.ts AdminUiControl). */
export interface AdminUiApi {
  createSigninLink(label: string): Promise<{ url: string; expiresAt: Date }>;
  listSessions(): AdminSessionRecord[];
  revokeSession(id: number): Promise<boolean>;
  listAudit(limit: number): Promise<AuditEventRecord[]>;
}

/** The policy in force, as `policy get/set/check` see it. */
export interface PolicyApi {
  get(): Promise<{ policy: string; updatedAt: Date | null }>;
  /** Validates (including the policy's own tests), stores and applies; throws InvalidArgumentError. */
  set(policy: string): Promise<{ policy: string; updatedAt: Date | null }>;
  /** Validates without applying; throws InvalidArgumentError. */
  check(policy: string): Promise<void>;
}

export interface ServiceDeps {
  state: State;
  /**
   * What waits for an admin (`auth register/approve/reject`): logins, SSH checks, and the
   * machines DebugCreateNode parks. Pass the server's one registry to every API handler, so a
   * node parked over one listener can be registered over another.
   */
  authRequests: AuthRequests;
  policy: PolicyApi;
  /** Resolves while the database answers. */
  ping: () => Promise<void>;
  /** The admin UI's calls; a getter, since the UI is created after the API. Null: disabled. */
  adminUi?: () => AdminUiApi | null;
  now?: () => Date;
}

export function toConnectError(e: unknown): ConnectError {
  if (e instanceof ConnectError) return e;
  if (e instanceof InvalidArgumentError || e instanceof KeyRejectedError) {
    return new ConnectError(e.message, Code.InvalidArgument);
  }
  if (e instanceof NotFoundError) return new ConnectError(e.message, Code.NotFound);
  if (e instanceof AlreadyExistsError) return new ConnectError(e.message, Code.AlreadyExists);
  if (e instanceof ConflictError) return new ConnectError(e.message, Code.FailedPrecondition);
  if (e instanceof UnavailableError) return new ConnectError(e.message, Code.Unavailable);
  if (e instanceof PolicyInvalidError) return new ConnectError(e.message, Code.InvalidArgument);
  if (e instanceof PolicyModeError) return new ConnectError(e.message, Code.FailedPrecondition);
  return new ConnectError("internal error", Code.Internal, undefined, undefined, e);
}

function id(value: bigint, what: string): number {
  if (value <= 0n || value > BigInt(Number.MAX_SAFE_INTEGER)) {
    throw new InvalidArgumentError(`${what} must be a positive id`);
  }
  return Number(value);
}

function futureDate(t: Timestamp | undefined, now: Date): Date | null {
  if (!t || (t.seconds === 0n && t.nanos === 0)) return null;
  const d = timestampDate(t);
  if (d.getTime() <= now.getTime()) {
    throw new InvalidArgumentError("expiration must be in the future");
  }
  return d;
}

/** Accepts an API key's prefix as shown (`hskey-api-<prefix>-***`) or bare. */
function apiKeyPrefix(text: string): string {
  const m = /^(?:hskey-api-)?([0-9a-f]{12})(?:-\*\*\*)?$/.exec(text);
  if (!m) throw new InvalidArgumentError(`"${text}" is not an API key prefix`);
  return m[1];
}

export function createHeadscaleService(deps: ServiceDeps): ServiceImpl<typeof HeadscaleService> {
  const { state } = deps;
  const now = deps.now ?? (() => new Date());
  const nodeOut = (n: NodeRecord) => nodeToProto(n, state);
  const { authRequests } = deps;
  // DebugCreateNode parks made-up machines among the requests; `auth register` completes them.
  const debugNodes = authRequests.kind("debug-node", debugNodeHandler(state));
  const adminUi = (): AdminUiApi => {
    const ui = deps.adminUi?.();
    if (!ui) {
      throw new ConnectError(
        "the admin UI is disabled (admin_ui.enabled: false)",
        Code.FailedPrecondition,
      );
    }
    return ui;
  };

  const impl: ServiceImpl<typeof HeadscaleService> = {
    // ---- users
    async createUser(req) {
      if (req.name === "") throw new InvalidArgumentError("name is required");
      const user = await state.createUser({
        name: req.name,
        displayName: req.displayName,
        email: req.email,
        pictureUrl: req.pictureUrl,
      });
      return { user: userToProto(user) };
    },
    async renameUser(req) {
      const user = await state.renameUser(id(req.oldId, "old_id"), req.newName);
      return { user: userToProto(user) };
    },
    async deleteUser(req) {
      await state.deleteUser(id(req.id, "id"));
      return {};
    },
    listUsers(req) {
      const users = state.listUsers().filter((u) =>
        (req.id === 0n || BigInt(u.id) === req.id) &&
        (req.name === "" || u.name === req.name) &&
        (req.email === "" || u.email === req.email)
      );
      return { users: users.map(userToProto) };
    },

    // ---- pre-auth keys
    async createPreAuthKey(req) {
      const { record, key } = await state.createPreAuthKey({
        userId: req.user === 0n ? null : id(req.user, "user"),
        reusable: req.reusable,
        ephemeral: req.ephemeral,
        expiration: futureDate(req.expiration, now()),
        tags: req.aclTags,
      });
      return { preAuthKey: preAuthKeyToProto(record, state, key) };
    },
    async expirePreAuthKey(req) {
      await state.expirePreAuthKey(id(req.id, "id"));
      return {};
    },
    async deletePreAuthKey(req) {
      await state.deletePreAuthKey(id(req.id, "id"));
      return {};
    },
    listPreAuthKeys() {
      return { preAuthKeys: state.listPreAuthKeys().map((k) => preAuthKeyToProto(k, state)) };
    },

    // ---- nodes
    debugCreateNode(req) {
      if (req.user === "") throw new InvalidArgumentError("user is required");
      const user = state.findUser(req.user);
      const reg = newDebugRegistration({ key: req.key, name: req.name, routes: req.routes });
      debugNodes.open(reg, { id: req.key });
      return { node: debugNodeToProto(reg, user) };
    },
    getNode(req) {
      return { node: nodeOut(state.findNode(id(req.nodeId, "node_id"))) };
    },
    async setTags(req) {
      return { node: nodeOut(await state.setNodeTags(id(req.nodeId, "node_id"), req.tags)) };
    },
    async setApprovedRoutes(req) {
      const routes = req.routes.flatMap((r) => r.split(",")).map((r) => r.trim()).filter(Boolean);
      return { node: nodeOut(await state.setApprovedRoutes(id(req.nodeId, "node_id"), routes)) };
    },
    async registerNode(req) {
      if (req.key === "") throw new InvalidArgumentError("key (the registration id) is required");
      const user = state.findUser(req.user);
      return { node: nodeOut(await authRequests.register(req.key, user.id)) };
    },
    async deleteNode(req) {
      await state.deleteNode(id(req.nodeId, "node_id"));
      return {};
    },
    async expireNode(req) {
      const nodeId = id(req.nodeId, "node_id");
      let node: NodeRecord;
      if (req.disableExpiry) node = await state.setNodeExpiry(nodeId, null);
      else if (req.expiry && (req.expiry.seconds !== 0n || req.expiry.nanos !== 0)) {
        node = await state.setNodeExpiry(nodeId, timestampDate(req.expiry));
      } else node = await state.expireNode(nodeId);
      return { node: nodeOut(node) };
    },
    async moveNode(req) {
      const node = await state.moveNode(id(req.nodeId, "node_id"), id(req.user, "user"));
      return { node: nodeOut(node) };
    },
    async renameNode(req) {
      return { node: nodeOut(await state.renameNode(id(req.nodeId, "node_id"), req.newName)) };
    },
    listNodes(req) {
      const owner = req.user === "" ? undefined : state.findUser(req.user);
      const nodes = state.listNodes().filter((n) => !owner || n.userId === owner.id);
      return { nodes: nodes.map(nodeOut) };
    },
    async backfillNodeIPs(req) {
      if (!req.confirmed) {
        throw new InvalidArgumentError(
          "not confirmed, aborting: backfilling changes node addresses; set confirmed to true",
        );
      }
      try {
        return { changes: await state.backfillNodeIPs() };
      } catch (e) {
        if (e instanceof AddressExhaustedError) {
          throw new ConnectError(`backfilling IPs: ${e.message}`, Code.ResourceExhausted);
        }
        throw e;
      }
    },

    // ---- interactive auth
    async authRegister(req) {
      if (req.authId === "") throw new InvalidArgumentError("auth_id is required");
      const user = state.findUser(req.user);
      return { node: nodeOut(await authRequests.register(req.authId, user.id)) };
    },
    async authApprove(req) {
      if (req.authId === "") throw new InvalidArgumentError("auth_id is required");
      await authRequests.approve(req.authId);
      return {};
    },
    async authReject(req) {
      if (req.authId === "") throw new InvalidArgumentError("auth_id is required");
      await authRequests.reject(req.authId);
      return {};
    },

    // ---- API keys
    async createApiKey(req) {
      const { key } = await state.createApiKey(futureDate(req.expiration, now()));
      return { apiKey: key };
    },
    async expireApiKey(req) {
      const key = req.id !== 0n
        ? state.findApiKey({ id: id(req.id, "id") })
        : state.findApiKey({ prefix: apiKeyPrefix(req.prefix) });
      await state.expireApiKey(key.id);
      return {};
    },
    listApiKeys() {
      return { apiKeys: state.listApiKeys().map(apiKeyToProto) };
    },
    async deleteApiKey(req) {
      const key = req.id !== 0n
        ? state.findApiKey({ id: id(req.id, "id") })
        : state.findApiKey({ prefix: apiKeyPrefix(req.prefix) });
      await state.deleteApiKey(key.id);
      return {};
    },

    // ---- policy
    async getPolicy() {
      const p = await deps.policy.get();
      return {
        policy: p.policy,
        updatedAt: p.updatedAt ? timestampFromDate(p.updatedAt) : undefined,
      };
    },
    async setPolicy(req) {
      const p = await deps.policy.set(req.policy);
      return {
        policy: p.policy,
        updatedAt: p.updatedAt ? timestampFromDate(p.updatedAt) : undefined,
      };
    },
    async checkPolicy(req) {
      await deps.policy.check(req.policy);
      return {};
    },

    // ---- health
    async health() {
      try {
        await deps.ping();
        return { databaseConnectivity: true };
      } catch {
        return { databaseConnectivity: false };
      }
    },

    // ---- admin web UI
    async createAdminSigninLink(req) {
      const label = req.label.trim() || "admin";
      if (!/^[\w.@+-]{1,64}$/.test(label)) {
        throw new InvalidArgumentError(
          "label: use 1-64 letters, digits, and . _ - + @ (it names who the link is for)",
        );
      }
      const link = await adminUi().createSigninLink(label);
      return { url: link.url, expiration: timestampFromDate(link.expiresAt) };
    },
    listAdminSessions() {
      return {
        sessions: adminUi().listSessions().map((s) => ({
          $typeName: "headscale.v1.AdminSession" as const,
          id: BigInt(s.id),
          identity: s.identity,
          displayName: s.displayName,
          clientAddr: s.clientAddr,
          createdAt: timestampFromDate(s.createdAt),
          expiration: timestampFromDate(s.expiresAt),
        })),
      };
    },
    async revokeAdminSession(req) {
      const sessionId = id(req.id, "id");
      if (!(await adminUi().revokeSession(sessionId))) {
        throw new NotFoundError(`admin session ${sessionId} not found`);
      }
      return {};
    },
    async listAuditEvents(req) {
      const events = await adminUi().listAudit(req.limit === 0 ? 100 : req.limit);
      return {
        events: events.map((e) => ({
          $typeName: "headscale.v1.AuditEvent" as const,
          id: BigInt(e.id),
          time: timestampFromDate(e.at),
          actor: e.actor,
          action: e.action,
          target: e.target,
          details: JSON.stringify(e.details),
          clientAddr: e.clientAddr,
        })),
      };
    },
  };

  // Every method: state errors → gRPC codes, never a raw exception.
  const wrapped = {} as Record<string, unknown>;
  for (const [name, fn] of Object.entries(impl)) {
    wrapped[name] = async (req: unknown, ctx: unknown) => {
      try {
        return await (fn as (r: unknown, c: unknown) => unknown)(req, ctx);
      } catch (e) {
        throw toConnectError(e);
      }
    };
  }
  return wrapped as ServiceImpl<typeof HeadscaleService>;
}
