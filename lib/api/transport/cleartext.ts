/**
 * Cleartext API listeners: HTTP/2 with prior knowledge (h2c, plain gRPC as headscale's CLI speaks
 * it on the unix socket) and HTTP/1.1 (REST, Connect, gRPC-Web, curl) on the same socket, told
 * apart by the connection preface. Used for the unix socket and for an insecure gRPC TCP port.
 */
import http from "node:http";
import http2 from "node:http2";
import net from "node:net";
import { chmod, lstat, mkdir, rm } from "node:fs/promises";
import { dirname } from "node:path";
import { sniffProtocol } from "./preface.ts";
import { guardHandler } from "./guard.ts";
import { answerClientError, limitConnections } from "../../http/limits.ts";
import {
  type ApiListener,
  type ApiRequestHandler,
  awaitListening,
  closeServer,
  type ConnectionErrorHandler,
  ConnectionSet,
} from "./listener.ts";

export interface CleartextOptions {
  /** Also accept HTTP/1.1 on the socket (default true); h2c is always accepted. */
  http1?: boolean;
  /** Drop connections that send no complete preface or request line within this time. */
  sniffTimeoutMs?: number;
  /** Connection-level failures; they never reach the request handler. Default: ignored. */
  onConnectionError?: ConnectionErrorHandler;
  /** Connections open at once (tuning.max_connections); those past it are dropped. */
  maxConnections?: number;
}

/**
 * A net.Server that hands each connection to an internal node:http2 server (h2c) or node:http
 * server (HTTP/1.1), both calling `handler`. Listen on it yourself, or use serveUnixSocket /
 * serveCleartextTcp which also clean up on close.
 */
export function createCleartextServer(
  handler: ApiRequestHandler,
  options: CleartextOptions = {},
  connections: ConnectionSet = new ConnectionSet(),
): net.Server {
  const acceptHttp1 = options.http1 ?? true;
  const report = options.onConnectionError ?? (() => {});
  const guarded = guardHandler(handler, report);
  const h2Server = http2.createServer(guarded);
  h2Server.on("sessionError", (error: Error) => report(error));
  const h1Server = acceptHttp1 ? http.createServer(guarded) : undefined;
  // Oversized headers get 431 and garbage 400, not a bare close.
  h1Server?.on("clientError", (error: Error, socket) => {
    report(error);
    answerClientError(error, socket);
  });

  const server = net.createServer((socket) => {
    connections.add(socket);
    // Without a listener, a reset connection would throw from the socket's "error" event.
    socket.on("error", (error) => report(error));
    sniffProtocol(socket, { timeoutMs: options.sniffTimeoutMs }).then(
      (protocol) => {
        if (protocol === "h2") h2Server.emit("connection", socket);
        else if (h1Server) h1Server.emit("connection", socket);
        else {
          report(new Error("HTTP/1.1 request on an h2c-only listener"));
          return socket.destroy();
        }
        socket.resume();
      },
      (error: Error) => {
        report(error);
        socket.destroy();
      },
    );
  });
  if (options.maxConnections !== undefined) limitConnections(server, options.maxConnections);
  return server;
}

export interface UnixSocketOptions extends CleartextOptions {
  path: string;
  /** File mode of the socket (headscale's unix_socket_permission; default 0o770). */
  mode?: number;
}

/**
 * Serves `handler` on a unix socket (h2c + HTTP/1.1). A stale socket file left by a previous run
 * is replaced; any other kind of file at `path` is an error rather than something to delete.
 */
export async function serveUnixSocket(
  handler: ApiRequestHandler,
  options: UnixSocketOptions,
): Promise<ApiListener> {
  const { path } = options;
  await removeStaleSocket(path);
  await mkdir(dirname(path), { recursive: true });
  const connections = new ConnectionSet();
  const server = createCleartextServer(handler, options, connections);
  server.listen(path);
  await awaitListening(server);
  await chmod(path, options.mode ?? 0o770);
  return {
    address: `unix:${path}`,
    port: undefined,
    async close() {
      await closeServer(server, connections);
      await rm(path, { force: true });
    },
  };
}

export interface CleartextTcpOptions extends CleartextOptions {
  hostname: string;
  /** 0 picks a free port; read it back from the listener. */
  port: number;
}

/** Serves `handler` on TCP without TLS (h2c + HTTP/1.1), e.g. behind a TLS-terminating proxy. */
export async function serveCleartextTcp(
  handler: ApiRequestHandler,
  options: CleartextTcpOptions,
): Promise<ApiListener> {
  const connections = new ConnectionSet();
  const server = createCleartextServer(handler, options, connections);
  server.listen(options.port, options.hostname);
  await awaitListening(server);
  const bound = server.address() as net.AddressInfo;
  return {
    address: `${options.hostname}:${bound.port}`,
    port: bound.port,
    close: () => closeServer(server, connections),
  };
}

async function removeStaleSocket(path: string): Promise<void> {
  let info;
  try {
    info = await lstat(path);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return;
    throw error;
  }
  if (!info.isSocket()) {
    throw new Error(`${path} exists and is not a unix socket; refusing to replace it`);
  }
  await rm(path);
}
