/**
 * The remote API listener: TLS with ALPN choosing "h2" (gRPC, as headscale's CLI speaks it with
 * cli.address) or "http/1.1" (REST, Connect, gRPC-Web from browsers and UIs), both served by the
 * same handler.
 */
import http2 from "node:http2";
import { Buffer } from "node:buffer";
import type { AddressInfo } from "node:net";
import {
  type ApiListener,
  type ApiRequestHandler,
  awaitListening,
  closeServer,
  type ConnectionErrorHandler,
  ConnectionSet,
} from "./listener.ts";
import { guardHandler } from "./guard.ts";
import { limitConnections } from "../../http/limits.ts";

export interface TlsOptions {
  /** PEM certificate chain and private key. */
  cert: string | Uint8Array;
  key: string | Uint8Array;
  /** Also accept HTTP/1.1 over TLS (default true). */
  http1?: boolean;
  onConnectionError?: ConnectionErrorHandler;
  /** Connections open at once (tuning.max_connections); those past it are dropped. */
  maxConnections?: number;
}

export interface TlsListenOptions extends TlsOptions {
  hostname: string;
  /** 0 picks a free port; read it back from the listener. */
  port: number;
}

/** An http2 secure server for `handler`; listen on it yourself or use serveTls. */
export function createTlsServer(
  handler: ApiRequestHandler,
  options: TlsOptions,
  connections: ConnectionSet = new ConnectionSet(),
): http2.Http2SecureServer {
  const report = options.onConnectionError ?? (() => {});
  const acceptHttp1 = options.http1 ?? true;
  const server = http2.createSecureServer(
    {
      cert: asPem(options.cert),
      key: asPem(options.key),
      allowHTTP1: acceptHttp1,
      ALPNProtocols: acceptHttp1 ? ["h2", "http/1.1"] : ["h2"],
    },
    guardHandler(handler, report),
  );
  server.on("secureConnection", (socket) => {
    connections.add(socket);
    socket.on("error", (error: Error) => report(error));
  });
  server.on("tlsClientError", (error: Error) => report(error));
  server.on("sessionError", (error: Error) => report(error));
  if (options.maxConnections !== undefined) limitConnections(server, options.maxConnections);
  return server;
}

/** Serves `handler` over TLS on TCP. */
export async function serveTls(
  handler: ApiRequestHandler,
  options: TlsListenOptions,
): Promise<ApiListener> {
  const connections = new ConnectionSet();
  const server = createTlsServer(handler, options, connections);
  server.listen(options.port, options.hostname);
  await awaitListening(server);
  const bound = server.address() as AddressInfo;
  return {
    address: `${options.hostname}:${bound.port}`,
    port: bound.port,
    close: () => closeServer(server, connections),
  };
}

function asPem(value: string | Uint8Array): string | Buffer {
  return typeof value === "string" ? value : Buffer.from(value);
}
