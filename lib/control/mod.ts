/**
 * The control plane: what a Tailscale client talks to inside Noise.
 *
 * ```ts
 * const control = createControlPlane({ state, config, log, derpMap: () => derp.map() });
 * // ts2021 upgrade → for each established Noise connection:
 * control.handleNoiseConnection(noiseConn, "mkey:…", capVersion);
 * // main listener: GET /register/<id> (the AuthURL of interactive logins), GET /auth/<id> (the
 * // page an SSH check's message names)
 * router.on("GET", "/register/", control.registerPage).on("GET", "/auth/", control.authPage);
 * // API / CLI (the object fits the API's PendingAuthApi as is):
 * await control.authRequests.register(id, userId); // auth register --auth-id <id> --user <name>
 * await control.authRequests.approve(id);   // an SSH check, or re-auth of a known machine
 * await control.authRequests.reject(id);    // auth reject (either kind)
 * control.pendingAuths.list();
 * // the policy engine (default: allow-all; contract in ../mapper/policy_view.ts):
 * control.setPolicy(policyEngineView(engine));
 * // after a node change, the nodes the engine reports get what changed for them (a delta):
 * control.resync(engine.upsertNode(policyNode));
 * await control.close();
 * ```
 *
 * - `handleNoiseConnection(conn, machineKey, capVersion)` serves HTTP/2 over the plaintext Duplex
 *   of one Noise connection. Routes: POST /machine/register, POST /machine/map, POST
 *   /machine/update-health (200), POST /machine/set-dns ({}), GET /machine/ssh/action/<src>/to/<dst>
 *   (SSH check mode, ssh_check.ts), other /machine/* → 501.
 * - The map stream, deltas, keep-alives, key-expiry and ephemeral-node clean-up all run from
 *   here, and dns.extra_records_path is re-read when it changes; `close()` stops them and
 *   closes every connection.
 *
 * Modules: register.ts (register semantics), pending_auths.ts (interactive logins),
 * map_session.ts (map requests), noise_server.ts (HTTP/2 routing), ../mapper (map building and
 * fan-out), ../dns (DNSConfig).
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Duplex } from "node:stream";
import type { Config, DnsExtraRecord } from "../config/config.ts";
import type { Logger } from "../log/log.ts";
import type { State } from "../state/state.ts";
import type { NodeRecord } from "../store/types.ts";
import type { DERPMap } from "../tailcfg/types.ts";
import { Mapper } from "../mapper/mapper.ts";
import { Notifier } from "../mapper/notifier.ts";
import { MapResponseDump } from "../mapper/dump.ts";
import type { PolicyView } from "../mapper/policy_view.ts";
import { ExtraRecordsWatcher } from "../dns/extra_records.ts";
import { EphemeralGc } from "./ephemeral_gc.ts";
import { MapService } from "./map_session.ts";
import { type BodyLimits, createControlHandler, MIN_CAP_VERSION } from "./noise_server.ts";
import { PendingAuths } from "./pending_auths.ts";
import { createAuthPageHandler, createRegisterPageHandler } from "./register_page.ts";
import { SshChecks } from "./ssh_check.ts";
import { registerApproved, RegisterService } from "./register.ts";

export { MIN_CAP_VERSION };
export type { PolicyView };
export { ALLOW_ALL_FILTER, allowAllPolicy } from "../mapper/policy_view.ts";
export { policyEngineView } from "../mapper/policy_engine_view.ts";
export type { AuthVerdict, PendingAuthInfo, PendingAuths } from "./pending_auths.ts";

export interface ControlPlaneDeps {
  state: State;
  config: Config;
  log: Logger;
  /** The current DERP map (at least one region); called for every full map, so keep it cheap. */
  derpMap: () => DERPMap;
  /** Defaults to allow-all (everyone sees everyone, all ports open). */
  policy?: PolicyView;
  /** Write every map response sent under this folder (HEADSCALE_DEBUG_DUMP_MAPRESPONSE_PATH). */
  debugDumpMapResponsePath?: string;
  /** Current extra DNS records; by default read from dns.extra_records_path (re-read on change). */
  extraRecords?: () => readonly DnsExtraRecord[];
  /** Knobs for tests; production uses the defaults. */
  tuning?: {
    keepAliveMs?: number;
    keepAliveJitterMs?: number;
    /** Overrides config.tuning.batchChangeDelayMs. */
    batchDelayMs?: number;
    followupWaitMs?: number;
    authTtlMs?: number;
    minCapVersion?: number;
    bodyLimits?: Partial<BodyLimits>;
  };
}

/** What `auth register/approve/reject` act on: interactive logins and SSH checks. */
export interface AuthRequests {
  register(authId: string, userId: number): Promise<NodeRecord>;
  approve(authId: string): Promise<unknown>;
  reject(authId: string): Promise<void>;
}

export interface ControlPlane {
  handleNoiseConnection(conn: Duplex, machineKey: string, capVersion: number): void;
  registerPage(req: IncomingMessage, res: ServerResponse): void;
  authPage(req: IncomingMessage, res: ServerResponse): void;
  pendingAuths: PendingAuths;
  sshChecks: SshChecks;
  authRequests: AuthRequests;
  mapper: Mapper;
  notifier: Notifier;
  /** Map request totals since start (streams, full maps, lite updates), for metrics. */
  readonly mapStats: Readonly<MapService["stats"]>;
  /**
   * Plugs in a (new) policy. With the next batch each session gets only what changed for it
   * (peers removed and added, packet filter, SSH policy, its own capabilities), or nothing.
   */
  setPolicy(policy: PolicyView): void;
  /**
   * With the next batch, sends these nodes what changed for them in the policy's outputs (e.g.
   * the ids a policy engine says are affected by a node change); without ids, every node.
   */
  resync(nodeIds?: Iterable<number>): void;
  close(): Promise<void>;
}

export function createControlPlane(deps: ControlPlaneDeps): ControlPlane {
  const { state, config, tuning = {} } = deps;
  const log = deps.log.child({ component: "control" });
  // dns.extra_records_path: re-read on change; peers get the new DNSConfig as a delta.
  const extraRecordsFile = !deps.extraRecords && config.dns.extraRecordsPath
    ? new ExtraRecordsWatcher({
      path: config.dns.extraRecordsPath,
      log,
      onChange: () => state.announce({ kind: "dns-changed" }),
    })
    : null;
  void extraRecordsFile?.start();
  const mapper = new Mapper({
    state,
    config,
    policy: deps.policy,
    derpMap: deps.derpMap,
    extraRecords: deps.extraRecords ??
      (extraRecordsFile ? () => extraRecordsFile.current() : undefined),
  });
  const notifier = new Notifier({
    state,
    mapper,
    log: log.child({ component: "notifier" }),
    batchDelayMs: tuning.batchDelayMs ?? config.tuning.batchChangeDelayMs,
  });
  const ephemeral = new EphemeralGc({
    state,
    timeoutMs: config.node.ephemeralInactivityTimeoutMs,
    log,
  });
  ephemeral.start();
  const pendingAuths = new PendingAuths({
    register: registerApproved({
      state,
      config,
      // `tailscale up --advertise-tags`: asks the policy in force when the admin decides.
      mayOwnTag: (user, tag) => mapper.policy.mayOwnTag?.(user, tag) ?? false,
    }),
    log,
    ttlMs: tuning.authTtlMs,
  });
  const register = new RegisterService({
    state,
    pendingAuths,
    config,
    log,
    followupWaitMs: tuning.followupWaitMs,
  });
  const maps = new MapService({
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
    getNode: (id) => state.getNode(id),
    checkPeriodMs: (src, dst) => mapper.policy.sshCheckPeriodMs?.(src, dst) ?? null,
    serverUrl: config.serverUrl,
    log,
    ttlMs: tuning.authTtlMs,
  });
  const authRequests: AuthRequests = {
    register: (id, userId) => pendingAuths.register(id, userId),
    // deno-lint-ignore require-await
    approve: async (id) => sshChecks.has(id) ? sshChecks.approve(id) : pendingAuths.approve(id),
    // deno-lint-ignore require-await
    reject: async (id) => sshChecks.has(id) ? sshChecks.reject(id) : pendingAuths.reject(id),
  };
  const handler = createControlHandler({
    state,
    register,
    maps,
    sshChecks,
    log,
    minCapVersion: tuning.minCapVersion,
    limits: tuning.bodyLimits,
  });
  const registerPage = createRegisterPageHandler(pendingAuths);

  return {
    handleNoiseConnection: handler,
    registerPage,
    authPage: createAuthPageHandler(sshChecks),
    pendingAuths,
    sshChecks,
    authRequests,
    mapper,
    notifier,
    mapStats: maps.stats,
    setPolicy(next) {
      mapper.setPolicy(next);
      sshChecks.forgetApprovals();
      state.announce({ kind: "policy-changed" });
    },
    resync: (ids) => notifier.resync(ids),
    async close() {
      extraRecordsFile?.close();
      pendingAuths.close();
      sshChecks.close();
      notifier.close();
      ephemeral.close();
      await handler.close();
    },
  };
}
