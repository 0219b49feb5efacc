/**
 * The control plane: what a Tailscale client talks to inside Noise. It is handed the tailnet's
 * pieces (state, mapper, notifier, ephemeral-node clean-up), which server.ts builds and wires.
 *
 * ```ts
 * const control = createControlPlane({ state, config, log, mapper, notifier, ephemeral });
 * // ts2021 upgrade → for each established Noise connection:
 * control.handleNoiseConnection(noiseConn, "mkey:…", capVersion);
 * // main listener: GET /register/<id> (the AuthURL of interactive logins), GET /auth/<id> (the
 * // page an SSH check's message names)
 * router.on("GET", "/register/", control.registerPage).on("GET", "/auth/", control.authPage);
 * // HEAD /machine/ping-response?id=…: a client answering a PingRequest (HA router probes)
 * router.on("HEAD", "/machine/ping-response", control.pingResponse);
 * // API / CLI: the auth-request registry (../auth_requests), where logins and SSH checks wait:
 * await control.authRequests.register(id, userId); // auth register --auth-id <id> --user <name>
 * await control.authRequests.approve(id);   // an SSH check, or re-auth of a known machine
 * await control.authRequests.reject(id);    // auth reject (any kind)
 * control.policyChanged();                  // a new policy: SSH check approvals are forgotten
 * await control.close();
 * ```
 *
 * - `handleNoiseConnection(conn, machineKey, capVersion)` serves HTTP/2 over the plaintext Duplex
 *   of one Noise connection. Routes: POST /machine/register, POST /machine/map, POST
 *   /machine/update-health (200), POST /machine/set-dns ({}), GET /machine/ssh/action/<src>/to/<dst>
 *   (SSH check mode, ssh_check.ts), other /machine/* → 501.
 *
 * Modules: register.ts (register semantics), pending_auths.ts (interactive logins: the registry's
 * "login" kind), ssh_check.ts (its "ssh-check" kind), ha_prober.ts (HA subnet router probes),
 * map_session.ts (map requests and streams), noise_server.ts (HTTP/2 routing).
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Duplex } from "node:stream";
import type { Config } from "../config/config.ts";
import type { Logger } from "../log/log.ts";
import type { State } from "../state/state.ts";
import type { Mapper } from "../mapper/mapper.ts";
import type { Notifier } from "../mapper/notifier.ts";
import { MapResponseDump } from "../mapper/dump.ts";
import type { EphemeralGc } from "../state/ephemeral_gc.ts";
import { MapService } from "./map_session.ts";
import { SetupGate } from "./setup_gate.ts";
import { type BodyLimits, createControlHandler } from "./noise_server.ts";
import { AuthRequestRegistry, type AuthRequests } from "../auth_requests/registry.ts";
import { PendingAuths } from "./pending_auths.ts";
import { createAuthPageHandler, createRegisterPageHandler } from "./register_page.ts";
import { SshChecks } from "./ssh_check.ts";
import { HaProber } from "./ha_prober.ts";
import { registerApproved, RegisterService } from "./register.ts";
import type { MachineKey } from "../tailcfg/keys.ts";
import type { OidcClient } from "../oidc/client.ts";
import { OidcWeb } from "../oidc/web.ts";
import { providerIdentifier, trustedEmail } from "../oidc/claims.ts";

export type { AuthVerdict, PendingAuths } from "./pending_auths.ts";

export interface ControlPlaneDeps {
  state: State;
  config: Config;
  log: Logger;
  /** Builds map responses (its policy is the one in force: setPolicy). */
  mapper: Mapper;
  /** The open map streams and the deltas they get. */
  notifier: Notifier;
  /** Deletes ephemeral nodes that stay offline too long; map streams cancel and arm it. */
  ephemeral: EphemeralGc;
  /** Write every map response sent under this folder (HEADSCALE_DEBUG_DUMP_MAPRESPONSE_PATH). */
  debugDumpMapResponsePath?: string;
  /**
   * Where logins and SSH checks wait for an admin (shared with the API; its owner closes it).
   * Without one, the control plane keeps a registry of its own (tuning.authTtlMs) and closes it.
   */
  authRequests?: AuthRequestRegistry;
  /** With `oidc.issuer`: logins and SSH checks go through the OpenID provider. */
  oidc?: OidcClient | null;
  /** Knobs for tests; production uses the defaults. */
  tuning?: {
    keepAliveMs?: number;
    keepAliveJitterMs?: number;
    followupWaitMs?: number;
    authTtlMs?: number;
    minCapVersion?: number;
    bodyLimits?: Partial<BodyLimits>;
  };
}

export interface ControlPlane {
  handleNoiseConnection(conn: Duplex, machineKey: MachineKey, capVersion: number): void;
  registerPage(req: IncomingMessage, res: ServerResponse): void;
  authPage(req: IncomingMessage, res: ServerResponse): void;
  /** `GET /oidc/callback` (answers 404 without OIDC). */
  oidcCallback(req: IncomingMessage, res: ServerResponse): void;
  /** `POST /oidc/confirm`: the browser confirms the registration its OIDC login asked for. */
  oidcConfirm(req: IncomingMessage, res: ServerResponse): void;
  /** The registry its logins and SSH checks wait in (`auth register/approve/reject/list`). */
  authRequests: AuthRequests;
  /** Map request totals since start (streams, full maps, lite updates), for metrics. */
  readonly mapStats: Readonly<MapService["stats"]>;
  /**
   * `HEAD /machine/ping-response?id=<id>` on the main listener: a client answering a PingRequest
   * (the HA prober's, ha_prober.ts).
   */
  pingResponse(req: IncomingMessage, res: ServerResponse): void;
  /** A new policy is in force: approvals of SSH checks are forgotten. */
  policyChanged(): void;
  close(): Promise<void>;
}

export function createControlPlane(deps: ControlPlaneDeps): ControlPlane {
  const { state, config, mapper, notifier, ephemeral, tuning = {} } = deps;
  const log = deps.log.child({ component: "control" });
  const authRequests = deps.authRequests ??
    new AuthRequestRegistry({ ttlMs: tuning.authTtlMs, log });
  const pendingAuths = new PendingAuths({
    requests: authRequests,
    register: registerApproved({
      state,
      config,
      // `tailscale up --advertise-tags`: asks the policy in force when the admin decides.
      mayOwnTag: (user, tag) => mapper.policy.mayOwnTag?.(user, tag) ?? false,
    }),
    log,
  });
  const register = new RegisterService({
    state,
    pendingAuths,
    config,
    log,
    followupWaitMs: tuning.followupWaitMs,
  });
  // tuning.max_connecting_nodes: full maps answered at once; the other requests wait their turn.
  const mapGate = new SetupGate({ limit: config.tuning.maxConnectingNodes, maxHoldMs: 10_000 });
  const maps = new MapService({
    gate: mapGate,
    state,
    mapper,
    notifier,
    ephemeral,
    log,
    keepAliveMs: tuning.keepAliveMs,
    keepAliveJitterMs: tuning.keepAliveJitterMs,
    dump: deps.debugDumpMapResponsePath
      ? new MapResponseDump(deps.debugDumpMapResponsePath, log)
      : undefined,
  });
  const sshChecks = new SshChecks({
    requests: authRequests,
    getNode: (id) => state.getNode(id),
    checkPeriodMs: (src, dst) => mapper.policy.sshCheckPeriodMs?.(src, dst) ?? null,
    serverUrl: config.serverUrl,
    log,
  });
  const handler = createControlHandler({
    state,
    register,
    maps,
    sshChecks,
    log,
    minCapVersion: tuning.minCapVersion,
    limits: tuning.bodyLimits,
  });
  const oidc = deps.oidc && config.oidc
    ? new OidcWeb({
      client: deps.oidc,
      config: config.oidc,
      serverUrl: config.serverUrl,
      log: deps.log.child({ component: "oidc" }),
      upsertUser: (c) =>
        state.upsertOidcUser({
          providerId: providerIdentifier(c.iss, c.sub),
          names: [c.preferredUsername, trustedEmail(c, config.oidc!.emailVerifiedRequired)],
          displayName: c.name,
          email: trustedEmail(c, config.oidc!.emailVerifiedRequired),
          profilePicUrl: c.picture,
        }),
      isPending: (purpose, id) =>
        purpose === "register" ? pendingAuths.isPending(id) : sshChecks.has(id),
      register: (id, userId, expiry) => pendingAuths.registerWithOidc(id, userId, expiry),
      sshCheckSource: (id) => sshChecks.sourceOf(id),
      getNode: (id) => state.getNode(id),
      approveSshCheck: async (id) => void await authRequests.approve(id),
      machineName: (id) => pendingAuths.get(id)?.hostname,
    })
    : null;
  const registerPage = createRegisterPageHandler(pendingAuths, oidc);
  // node.routes.ha: routers sharing a prefix are pinged; one that does not answer loses primary.
  const ha = config.node.routes.ha;
  const prober = new HaProber({
    state,
    send: (nodeId, msg) => notifier.sendTo(nodeId, msg),
    serverUrl: config.serverUrl.replace(/\/+$/, ""),
    intervalMs: ha.probeIntervalMs,
    timeoutMs: ha.probeTimeoutMs,
    log: deps.log.child({ component: "ha" }),
  });
  prober.start();

  return {
    handleNoiseConnection: handler,
    registerPage,
    authPage: createAuthPageHandler(sshChecks, oidc),
    oidcCallback: (req, res) => {
      if (oidc) oidc.callback(req, res);
      else res.writeHead(404, { "content-type": "text/plain" }).end("OIDC is not configured\n");
    },
    oidcConfirm: (req, res) => {
      if (oidc) oidc.confirm(req, res);
      else res.writeHead(404, { "content-type": "text/plain" }).end("OIDC is not configured\n");
    },
    authRequests,
    mapStats: maps.stats,
    pingResponse: prober.pingResponse,
    policyChanged: () => sshChecks.forgetApprovals(),
    async close() {
      mapGate.close();
      maps.endWaiting();
      prober.close();
      if (!deps.authRequests) authRequests.close();
      await handler.close();
    },
  };
}
