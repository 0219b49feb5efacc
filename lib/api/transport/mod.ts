/**
 * Listeners for the management API. Pass them the handler from connectNodeAdapter (plus any REST
 * routing in front of it): one handler serves gRPC, gRPC-Web and Connect over every listener.
 *
 *   serveUnixSocket(handler, { path })               h2c + HTTP/1.1 on the CLI's unix socket
 *   serveTls(handler, { hostname, port, cert, key })  gRPC over h2 (ALPN) + HTTP/1.1 over TLS
 *   serveCleartextTcp(handler, { hostname, port })    h2c + HTTP/1.1 on TCP (insecure gRPC port)
 */
export {
  type CleartextOptions,
  type CleartextTcpOptions,
  createCleartextServer,
  serveCleartextTcp,
  serveUnixSocket,
  type UnixSocketOptions,
} from "./cleartext.ts";
export { createTlsServer, serveTls, type TlsListenOptions, type TlsOptions } from "./tls.ts";
export {
  type ApiListener,
  type ApiRequestHandler,
  type ConnectionErrorHandler,
  ConnectionSet,
} from "./listener.ts";
export {
  classifyPrefix,
  HTTP2_CLIENT_PREFACE,
  PrefaceError,
  sniffProtocol,
  type WireProtocol,
} from "./preface.ts";
export { FALLBACK_AUTHORITY, guardHandler, isValidAuthority, normalizeAuthority } from "./guard.ts";
