/**
 * Puts the server together: store → state → protocol handlers → listeners. Everything is
 * created here and passed down; nothing lives in module-level state.
 */
import { createServer, type Server } from "node:http";
import { x25519 } from "@noble/curves/ed25519.js";
import type { Config } from "../config/config.ts";
import type { Logger } from "../log/log.ts";
import { loadOrCreatePrivateKey } from "../auth/keyfile.ts";
import { openStore } from "../store/mod.ts";
import type { Store } from "../store/types.ts";
import { State } from "../state/state.ts";
import { Router } from "../http/router.ts";
import { healthHandler, keyHandler } from "../http/basic_routes.ts";
import { createApiHandler, REST_PREFIX, RPC_PREFIX } from "../api/server.ts";
import type { PendingAuthApi, PolicyApi } from "../api/service.ts";
import {
  type ApiListener,
  serveCleartextTcp,
  serveTls,
  serveUnixSocket,
} from "../api/transport/mod.ts";
import { Code, ConnectError } from "@connectrpc/connect";

/** Oldest client the server talks to: Tailscale v1.80 (capability version 113). */
export const MIN_CAP_VERSION = 113;

export interface RunningServer {
  store: Store;
  state: State;
  /** The address the main listener is bound to (host:port). */
  listenAddress: string;
  close(): Promise<void>;
}

function hex(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

export function splitHostPort(addr: string): { host: string; port: number } {
  const m = /^\[?([^\]]*)\]?:(\d+)$/.exec(addr);
  if (!m) throw new Error(`invalid address ${addr}`);
  return { host: m[1] || "0.0.0.0", port: Number(m[2]) };
}

function listen(server: Server, addr: string): Promise<string> {
  const { host, port } = splitHostPort(addr);
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => {
      server.off("error", reject);
      const a = server.address();
      resolve(
        typeof a === "object" && a ? `${host.includes(":") ? `[${host}]` : host}:${a.port}` : addr,
      );
    });
  });
}

export async function startServer(config: Config, log: Logger): Promise<RunningServer> {
  const store = await openStore(config.database);
  await store.migrate();
  const state = await State.open({ store, log: log.child({ component: "state" }), config });

  const noisePrivate = await loadOrCreatePrivateKey(config.noisePrivateKeyPath);
  const noisePublic = "mkey:" + hex(x25519.getPublicKey(noisePrivate));

  const ping = () => store.ping();
  const apiLog = log.child({ component: "api" });
  // Until the control plane and the policy engine are wired in, these answer honestly.
  const pendingAuths: PendingAuthApi = {
    register: (id) =>
      Promise.reject(new ConnectError(`no pending registration ${id}`, Code.NotFound)),
    approve: (id) =>
      Promise.reject(new ConnectError(`no pending registration ${id}`, Code.NotFound)),
    reject: (id) =>
      Promise.reject(new ConnectError(`no pending registration ${id}`, Code.NotFound)),
  };
  const policy: PolicyApi = {
    get: async () => ({ policy: (await store.getPolicy()) ?? "", updatedAt: null }),
    set: () =>
      Promise.reject(
        new ConnectError("the policy engine is not available yet", Code.Unimplemented),
      ),
    check: () =>
      Promise.reject(
        new ConnectError("the policy engine is not available yet", Code.Unimplemented),
      ),
  };
  const apiDeps = { state, log: apiLog, ping, pendingAuths, policy };
  const remoteApi = createApiHandler({ ...apiDeps, requireApiKey: true });
  const localApi = createApiHandler({ ...apiDeps, requireApiKey: false });

  const router = new Router(log.child({ component: "http" }))
    .on("GET", "/health", healthHandler(ping))
    .on("GET", "/key", keyHandler(noisePublic, MIN_CAP_VERSION))
    .on("*", REST_PREFIX, remoteApi)
    .on("POST", RPC_PREFIX, remoteApi);

  const http = createServer({ requestTimeout: 0, headersTimeout: 30_000 });
  http.on("request", router.handleRequest);
  http.on("upgrade", router.handleUpgrade);
  http.on("clientError", (_e, socket) => socket.destroy());
  const listenAddress = await listen(http, config.listenAddr);
  log.info("listening", { addr: listenAddress, server_url: config.serverUrl });

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
    apiListeners.push(
      config.tls.certPath !== ""
        ? await serveTls(remoteApi, {
          hostname: host,
          port,
          cert: await Deno.readTextFile(config.tls.certPath),
          key: await Deno.readTextFile(config.tls.keyPath),
          onConnectionError,
        })
        : await serveCleartextTcp(remoteApi, { hostname: host, port, onConnectionError }),
    );
  }
  for (const l of apiListeners) log.info("management API listening", { addr: l.address });

  return {
    store,
    state,
    listenAddress,
    async close() {
      await Promise.all(apiListeners.map((l) => l.close()));
      await new Promise<void>((resolve) => {
        http.close(() => resolve());
        http.closeAllConnections();
      });
      await state.close();
      await store.close();
    },
  };
}
