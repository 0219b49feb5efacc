/**
 * Puts the server together: store → state → policy, mapper, notifier → protocol handlers →
 * listeners. Everything is created and wired here and passed down; nothing lives in
 * module-level state. The one subscription to State below says the order every change takes.
 */
import { createServer, type Server } from "node:http";
import { createServer as createTlsServer } from "node:https";
import type { Config } from "../config/config.ts";
import type { Logger } from "../log/log.ts";
import { loadOrCreatePrivateKey } from "../auth/keyfile.ts";
import { openStore } from "../store/mod.ts";
import type { Store } from "../store/types.ts";
import { State } from "../state/state.ts";
import { Router, sendText } from "../http/router.ts";
import { healthHandler, keyHandler } from "../http/basic_routes.ts";
import { createApiHandler, REST_PREFIX, RPC_PREFIX } from "../api/server.ts";
import {
  type ApiListener,
  serveCleartextTcp,
  serveTls,
  serveUnixSocket,
} from "../api/transport/mod.ts";
import { createControlPlane } from "../control/mod.ts";
import { Mapper } from "../mapper/mapper.ts";
import { Notifier } from "../mapper/notifier.ts";
import { allowAllPolicy } from "../mapper/policy_view.ts";
import { policyEngineView } from "../mapper/policy_engine_view.ts";
import { ExtraRecordsWatcher } from "../dns/extra_records.ts";
import { EphemeralGc } from "../state/ephemeral_gc.ts";
import { MIN_CAP_VERSION } from "../tailcfg/capver.ts";
import { PolicyManager } from "../policy_manager/manager.ts";
import { ts2021UpgradeHandler } from "../noise/upgrade.ts";
import { ChaChaSealEngine } from "../noise/chacha_wasm.ts";
import { WriteBatch } from "../net/write_batch.ts";
import { AuthRequestRegistry } from "../auth_requests/registry.ts";
import { formatKey, publicKeyOf } from "../tailcfg/keys.ts";
import { createDerp, type EmbeddedDerp } from "./derp.ts";
import { listenOn, splitHostPort } from "./addr.ts";
import { startMetricsListener } from "./metrics.ts";
import { tailnetMetrics } from "../metrics/tailnet.ts";
import { applyHttpLimits, type HttpLimits, httpServerOptions } from "../http/limits.ts";
import { checkStartupFiles } from "./startup_files.ts";
import { trustedProxyHook } from "../net/client_addr.ts";
import { versionHandler } from "../version.ts";
import { startOidc } from "../oidc/setup.ts";
import { createHeadscaleService } from "../api/service.ts";
import { type AdminUi, createAdminUi } from "../ui/app.ts";
import { inProcessApi } from "../ui/api.ts";
import { AuditLog } from "../ui/audit.ts";
import { AdminSessions } from "../ui/sessions.ts";
import { PAGES } from "../ui/pages.ts";
import type { TailnetMetricsSources } from "../metrics/tailnet.ts";
import { HealthSampler } from "../ui/health_sampler.ts";

export interface RunningServer {
  store: Store;
  state: State;
  /** The address the main listener is bound to (host:port). */
  listenAddress: string;
  /** Where /metrics is served (host:port), null when metrics_listen_addr is empty. */
  metricsAddress: string | null;
  close(): Promise<void>;
}

export async function startServer(config: Config, log: Logger): Promise<RunningServer> {
  // Missing files stop the start before anything is opened, naming the key and the file.
  const files = await checkStartupFiles(config);
  // OIDC: the secret and the provider's discovery (which may refuse the start).
  const oidc = await startOidc(config, log.child({ component: "oidc" }));
  const store = await openStore(config.database);
  await store.migrate();
  const state = await State.open({ store, log: log.child({ component: "state" }), config });

  const noisePrivate = await loadOrCreatePrivateKey(config.noisePrivateKeyPath);
  const noisePublic = formatKey(publicKeyOf(noisePrivate), "mkey");
  const derp: EmbeddedDerp = await createDerp(config, state, log.child({ component: "derp" }));
  const policy = await PolicyManager.open({
    config,
    store,
    state,
    log: log.child({ component: "policy" }),
  });
  // dns.extra_records_path: re-read on change; peers get the new DNSConfig as a delta.
  const extraRecords = config.dns.extraRecordsPath
    ? new ExtraRecordsWatcher({
      path: config.dns.extraRecordsPath,
      log: log.child({ component: "dns" }),
      onChange: () => state.announce({ kind: "dns-changed" }),
    })
    : null;
  void extraRecords?.start();
  const mapper = new Mapper({
    state,
    config,
    derpMap: () => derp.map(),
    extraRecords: extraRecords ? () => extraRecords.current() : undefined,
  });
  // A flush frames and seals for 128 sessions, then writes to them (lib/net/write_batch.ts).
  const writeBatch = new WriteBatch();
  const notifier = new Notifier({
    state,
    mapper,
    log: log.child({ component: "notifier" }),
    batchDelayMs: config.tuning.batchChangeDelayMs,
    adaptive: true,
    writeBatch,
  });
  // Every change to the tailnet, in this order: the mapper drops what it cached about it, the
  // policy engine learns it and answers whose view it affects, the notifier sends those
  // sessions and the changed nodes' viewers what changed.
  // The admin UI (created below, once the API exists) shows changes to open pages, last.
  let adminUi: AdminUi | null = null;
  let changesSeen = 0; // the admin UI's "changes per minute"
  state.subscribe((changes) => {
    changesSeen += changes.length;
    mapper.apply(changes);
    notifier.apply(changes, policy.apply(changes));
    adminUi?.onChanges(changes);
  });
  const ephemeral = new EphemeralGc({
    state,
    timeoutMs: config.node.ephemeralInactivityTimeoutMs,
    log: log.child({ component: "ephemeral" }),
  });
  ephemeral.start();
  // Logins, SSH checks and debug nodes wait for an admin in one registry: control and API share it.
  const authRequests = new AuthRequestRegistry({ log: log.child({ component: "auth" }) });
  const control = createControlPlane({
    state,
    config,
    log,
    authRequests,
    mapper,
    notifier,
    ephemeral,
    oidc,
    // headscale's debug knob, an environment variable only (never in a config file).
    debugDumpMapResponsePath: Deno.env.get("HEADSCALE_DEBUG_DUMP_MAPRESPONSE_PATH") || undefined,
  });
  policy.attach({
    setPolicy: (engine) => {
      mapper.setPolicy(engine ? policyEngineView(engine) : allowAllPolicy(() => mapper.nodeIds()));
      control.policyChanged();
      state.announce({ kind: "policy-changed" });
    },
  });
  derp.onMapChange(() => state.announce({ kind: "derp-map-changed" }));

  const ping = () => store.ping();
  const apiLog = log.child({ component: "api" });
  // Both API handlers share the registry: a debug node created over TCP registers over the socket.
  const apiDeps = {
    state,
    log: apiLog,
    ping,
    authRequests,
    policy,
    adminUi: () => adminUi?.control ?? null,
  };
  const remoteApi = createApiHandler({ ...apiDeps, requireApiKey: true });
  const localApi = createApiHandler({ ...apiDeps, requireApiKey: false });

  const metricsSources: TailnetMetricsSources = {
    state,
    sessions: () => notifier.sessionCount,
    pendingLogins: () => authRequests.list().filter((r) => r.kind === "login").length,
    maps: control.mapStats,
    notifier: notifier.stats,
    derp: () => derp.stats(),
    startedAt: new Date(),
  };

  // The admin web UI (admin_ui): changes go through the same service the API serves.
  let healthSampler: HealthSampler | null = null;
  if (config.adminUi.enabled) {
    const uiLog = log.child({ component: "ui" });
    healthSampler = new HealthSampler({
      nodesOnline: () => state.onlineCount,
      mapSessions: () => notifier.sessionCount,
      changesTotal: () => changesSeen,
    });
    healthSampler.start();
    adminUi = await createAdminUi({
      deps: {
        config,
        base: config.adminUi.path,
        state,
        api: inProcessApi(createHeadscaleService(apiDeps)),
        authRequests,
        policy,
        metrics: metricsSources,
        database: store,
        audit: new AuditLog({ store, log: uiLog }),
        sessions: new AdminSessions({ store, durationMs: config.adminUi.sessionDurationMs }),
        health: {
          sampler: healthSampler,
          derpMap: () => derp.map(),
          embeddedRegionId: config.derp.server.enabled ? config.derp.server.regionId : null,
        },
        log: uiLog,
        now: () => new Date(),
      },
      pages: PAGES,
      oidc,
    });
  }

  // When each connection was accepted: an upgrade read after its client's dial timeout is dropped.
  const connectedAt = new WeakMap<object, number>();
  const ts2021 = ts2021UpgradeHandler({
    serverPrivateKey: noisePrivate,
    connectedAt: (socket) => connectedAt.get(socket),
    sealEngine: new ChaChaSealEngine(),
    writeBatch,
    minCapVersion: MIN_CAP_VERSION,
    log: log.child({ component: "noise" }),
    onConnection: (conn) =>
      control.handleNoiseConnection(
        conn,
        formatKey(conn.peerPublicKey, "mkey"),
        conn.protocolVersion,
      ),
  });

  const router = new Router(log.child({ component: "http" }))
    .on("GET", "/health", healthHandler(() => store.checkWritable()))
    .on("GET", "/version", versionHandler())
    .on("GET", "/key", keyHandler(noisePublic, MIN_CAP_VERSION))
    .on("*", REST_PREFIX, remoteApi)
    .on("POST", RPC_PREFIX, remoteApi)
    .on("GET", "/register/", control.registerPage)
    .on("GET", "/auth/", control.authPage)
    .on("GET", "/oidc/callback", control.oidcCallback)
    .on("POST", "/oidc/confirm", control.oidcConfirm)
    .on("HEAD", "/machine/ping-response", control.pingResponse)
    .on("*", "/ts2021", (_req, res) => sendText(res, 400, "missing next protocol\n"))
    .upgrade("/ts2021", ts2021);
  derp.mount(router);
  if (adminUi) {
    const ui = adminUi;
    router.on("*", config.adminUi.path, ui.handle).on("*", `${config.adminUi.path}/`, ui.handle);
  }

  // With tls_cert_path/tls_key_path the main listener speaks HTTPS (needed by the embedded DERP:
  // clients dial DERP over TLS). ALPN is HTTP/1.1: /ts2021 and /derp are HTTP/1.1 upgrades.
  // Plain requests must arrive within tuning.http_request_timeout (else 408); upgraded
  // connections leave the HTTP server at the upgrade and are not timed.
  const limits: HttpLimits = {
    requestTimeoutMs: config.tuning.httpRequestTimeoutMs,
    maxConnections: config.tuning.maxConnections,
  };
  const serverOptions = httpServerOptions(limits);
  const http: Server = files.tls
    ? createTlsServer({ ...serverOptions, ...files.tls })
    : createServer(serverOptions);
  applyHttpLimits(http, limits);
  const noteConnected = (socket: object) => connectedAt.set(socket, performance.now());
  http.on(files.tls ? "secureConnection" : "connection", noteConnected);
  // trusted_proxies: every request learns its client address before it is routed.
  const resolveClient = trustedProxyHook(config.trustedProxies);
  http.on("request", (req, res) => {
    resolveClient(req);
    router.handleRequest(req, res);
  });
  // Set at shutdown: a /ts2021 or /derp upgrade then gets a closed socket, not a handshake with
  // a server about to vanish (Tailscale clients wait out a dial timeout on such a connection).
  let shuttingDown = false;
  http.on("upgrade", (req, socket, head) => {
    if (shuttingDown) socket.destroy();
    else {
      resolveClient(req);
      router.handleUpgrade(req, socket, head);
    }
  });
  // The API listeners come first: once /health answers, the CLI's socket is there too.
  const apiListeners: ApiListener[] = [];
  const onConnectionError = (e: Error) => apiLog.debug("API connection error", { error: e });
  apiListeners.push(
    await serveUnixSocket(localApi, {
      path: config.unixSocket,
      mode: config.unixSocketPermission,
      onConnectionError,
    }),
  );
  if (config.grpcListenAddr !== "") {
    const { host, port } = splitHostPort(config.grpcListenAddr);
    const { maxConnections } = limits;
    apiListeners.push(
      files.tls
        ? await serveTls(remoteApi, {
          hostname: host,
          port,
          ...files.tls,
          onConnectionError,
          maxConnections,
        })
        : await serveCleartextTcp(remoteApi, {
          hostname: host,
          port,
          onConnectionError,
          maxConnections,
        }),
    );
  }
  for (const l of apiListeners) log.info("management API listening", { addr: l.address });
  const metrics = await startMetricsListener(
    config.metricsListenAddr,
    tailnetMetrics(metricsSources),
    limits,
  );
  if (metrics) log.info("metrics listening", { addr: metrics.address });

  const listenAddress = await listenOn(http, config.listenAddr);
  log.info("listening", { addr: listenAddress, server_url: config.serverUrl });

  return {
    store,
    state,
    listenAddress,
    metricsAddress: metrics?.address ?? null,
    async close() {
      // Stop accepting first: clients that reconnect as their streams end must be refused (they
      // retry within milliseconds, reaching the next server as soon as it listens).
      shuttingDown = true;
      const httpClosed = new Promise<void>((resolve) => http.close(() => resolve()));
      await Promise.all(apiListeners.map((l) => l.close()));
      await metrics?.close();
      adminUi?.close();
      healthSampler?.stop();
      policy.close();
      extraRecords?.close();
      ephemeral.close();
      notifier.close();
      authRequests.close();
      await control.close();
      await derp.close();
      http.closeAllConnections();
      await httpClosed;
      await state.close();
      await store.close();
    },
  };
}
