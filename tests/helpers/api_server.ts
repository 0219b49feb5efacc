/**
 * The management API (REST, Connect, gRPC) on a loopback port over a test's own State, with a
 * fresh API key; the auth requests are an empty registry of their own and the policy a stand-in
 * unless the test passes its own.
 */
import { createServer, type Server } from "node:http";
import { createApiHandler } from "../../lib/api/server.ts";
import type { PolicyApi } from "../../lib/api/service.ts";
import { AuthRequestRegistry, type AuthRequests } from "../../lib/auth_requests/registry.ts";
import { silentLogger } from "../../lib/log/log.ts";
import { InvalidArgumentError } from "../../lib/state/errors.ts";
import type { State } from "../../lib/state/state.ts";
import type { Store } from "../../lib/store/mod.ts";

export interface ApiServerOptions {
  /** Default: an empty registry (no logins or SSH checks; debug nodes can be parked). */
  authRequests?: AuthRequests;
  policy?: PolicyApi;
  /** Serve on this unix socket with local trust (no API key), as the CLI's socket. */
  socket?: string;
}

export interface ApiServer {
  /** `http://127.0.0.1:<port>` (or the socket path) */
  base: string;
  /** A valid API key (`Authorization: Bearer <key>`). */
  key: string;
  /** Stops listening and drops open connections (the state and store stay open). */
  close(): Promise<void>;
}

/** A policy in file mode: nothing stored, `set` refused. */
export function fileModePolicy(): PolicyApi {
  return {
    get: () => Promise.resolve({ policy: "", updatedAt: null }),
    set: () => Promise.reject(new InvalidArgumentError("policy mode is file")),
    check: () => Promise.resolve(),
  };
}

export async function startApiServer(
  state: State,
  store: Store,
  opts: ApiServerOptions = {},
): Promise<ApiServer> {
  const handler = createApiHandler({
    state,
    log: silentLogger(),
    requireApiKey: opts.socket === undefined,
    ping: () => store.ping(),
    authRequests: opts.authRequests ?? new AuthRequestRegistry(),
    policy: opts.policy ?? fileModePolicy(),
  });
  const server: Server = createServer(handler);
  const socket = opts.socket;
  if (socket !== undefined) await new Promise<void>((r) => server.listen(socket, r));
  else await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const { key } = await state.createApiKey(null);
  return {
    base: socket ?? `http://127.0.0.1:${(server.address() as { port: number }).port}`,
    key,
    close: () =>
      new Promise<void>((r) => {
        server.close(() => r());
        server.closeAllConnections();
      }),
  };
}
