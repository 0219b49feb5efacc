/**
 * The management API (REST, Connect, gRPC) on a loopback port over a test's own State, with a
 * fresh API key; interactive logins and the policy are stand-ins unless the test passes its own.
 */
import { createServer, type Server } from "node:http";
import type { DebugRegistrations } from "../../lib/api/debug_registrations.ts";
import { createApiHandler } from "../../lib/api/server.ts";
import type { PendingAuthApi, PolicyApi } from "../../lib/api/service.ts";
import { silentLogger } from "../../lib/log/log.ts";
import { InvalidArgumentError, NotFoundError } from "../../lib/state/errors.ts";
import type { State } from "../../lib/state/state.ts";
import type { Store } from "../../lib/store/mod.ts";

export interface ApiServerOptions {
  pendingAuths?: PendingAuthApi;
  policy?: PolicyApi;
  debugRegistrations?: DebugRegistrations;
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

/** Interactive logins that know no id. */
export function noPendingAuths(): PendingAuthApi {
  const unknown = (id: string) => Promise.reject(new NotFoundError(`no pending login ${id}`));
  return { register: unknown, approve: unknown, reject: unknown };
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
    pendingAuths: opts.pendingAuths ?? noPendingAuths(),
    policy: opts.policy ?? fileModePolicy(),
    debugRegistrations: opts.debugRegistrations,
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
