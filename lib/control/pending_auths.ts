/**
 * Interactive logins: the "login" kind of the auth-request registry (../auth_requests). A client
 * without an auth key gets an AuthURL `<server_url>/register/<id>`, then re-sends its
 * RegisterRequest with Followup = that URL and expects the request to block until the login is
 * done. The admin runs `headscale-deno auth register --auth-id <id> --user <name>` (the machine
 * becomes a node of the user), `auth approve` (a known machine re-authenticating keeps its owner)
 * or `auth reject`; the registry dispatches those to this kind's handler.
 *
 * A decision is kept until the login expires, so a Followup that arrives after the admin acted
 * still gets it.
 */
import type { Logger } from "../log/log.ts";
import type { NodeRecord } from "../store/types.ts";
import type { Hostinfo } from "../tailcfg/types.ts";
import type { AuthRequests, RequestKind } from "../auth_requests/registry.ts";
import type { MachineKey, NodeKey } from "../tailcfg/keys.ts";

/** What the client asked for, kept until an admin decides. */
export interface RegistrationRequest {
  machineKey: MachineKey;
  nodeKey: NodeKey;
  hostname: string;
  hostinfo: Hostinfo | null;
  ephemeral: boolean;
  /** Requested key expiry, null for the server default. */
  expiry: Date | null;
  /**
   * Set when the user logged in with the OpenID provider: the node is registered with method
   * "oidc", and with `oidc.use_expiry_from_token` its key expires with the ID token.
   */
  oidc?: { tokenExpiry: Date | null };
}

export type AuthVerdict =
  | { kind: "approved"; node: NodeRecord }
  | { kind: "rejected"; reason: string };

/** "unknown": no such login (or it expired): start a new one. "timeout": ask again later. */
export type WaitResult = AuthVerdict | "timeout" | "unknown";

export interface PendingAuthsDeps {
  /** Where the logins wait, with SSH checks and debug nodes. */
  requests: AuthRequests;
  /**
   * Performs the registration when an admin approves (State.registerNode with the user); a null
   * user keeps the owner of the machine's existing node.
   */
  register(request: RegistrationRequest, userId: number | null): Promise<NodeRecord>;
  log: Logger;
}

export class PendingAuths {
  private readonly logins: RequestKind<RegistrationRequest>;

  constructor(private readonly deps: PendingAuthsDeps) {
    this.logins = deps.requests.kind<RegistrationRequest>("login", {
      noun: "login",
      keepsDecision: true,
      // `auth register --auth-id <id> --user <name>`: the waiting machine becomes the user's.
      register: (login, userId) => deps.register(login.data, userId),
      // A re-authentication (key rotation, expired key, --force-reauth) of a machine that
      // already has a node: it keeps its owner (or tags). Refused for a machine never seen.
      approve: (login) => deps.register(login.data, null),
      describe: (r) => ({ hostname: r.hostname, machineKey: r.machineKey, nodeKey: r.nodeKey }),
    });
  }

  /**
   * Starts an interactive login and returns its id. A machine asking again with the same node
   * key while its login is still pending gets the same id.
   */
  create(request: RegistrationRequest): string {
    for (const login of this.logins.all()) {
      if (
        login.status === "pending" && login.data.machineKey === request.machineKey &&
        login.data.nodeKey === request.nodeKey
      ) {
        login.data = request;
        return login.id;
      }
    }
    const { id } = this.logins.open(request);
    this.deps.log.info("interactive login started", {
      auth_id: id,
      hostname: request.hostname,
    });
    return id;
  }

  /**
   * The user logged in with the OpenID provider for login `id`: the machine becomes that user's
   * node (a known machine re-authenticates), through the registry like `auth register`.
   */
  registerWithOidc(id: string, userId: number, tokenExpiry: Date | null): Promise<NodeRecord> {
    const login = this.logins.get(id);
    if (login?.status === "pending") login.data = { ...login.data, oidc: { tokenExpiry } };
    return this.deps.requests.register(id, userId);
  }

  /** True while login `id` waits for a decision. */
  isPending(id: string): boolean {
    return this.logins.get(id)?.status === "pending";
  }

  /** The login's request, if the id is a known login that has not expired. */
  get(id: string): RegistrationRequest | undefined {
    return this.logins.get(id)?.data;
  }

  /**
   * Waits for the admin's decision. Resolves "unknown" for an unknown or expired id (or one
   * that belongs to another machine), "timeout" after `timeoutMs`, when `signal` aborts or at
   * shutdown.
   */
  async wait(
    id: string,
    machineKey: MachineKey,
    opts: { timeoutMs: number; signal?: AbortSignal },
  ): Promise<WaitResult> {
    const login = this.logins.get(id);
    if (!login || login.data.machineKey !== machineKey) return "unknown";
    const outcome = await this.logins.wait(login, opts);
    if (outcome === "expired") return "unknown";
    if (typeof outcome === "string") return "timeout";
    if (outcome.kind === "rejected") return outcome;
    // A login's approval always makes its node.
    return { kind: "approved", node: outcome.node! };
  }
}
