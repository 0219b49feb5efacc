/**
 * Wraps the API request handler so that what clients legitimately send cannot crash the process:
 *
 * - grpc-go on a unix socket sends the socket path, percent-encoded, as `:authority`
 *   ("%2Fvar%2Frun%2Fheadscale.sock"). connectNodeAdapter builds a WHATWG URL from the authority
 *   and throws synchronously on such a host, which would escape as an uncaught exception. An
 *   authority that is not a valid URL host is replaced by "localhost" before the handler runs.
 * - Deno's node:http serves only ONE request on a connection handed over with
 *   `emit("connection")` (as both listeners do) and then closes it, although it answered
 *   "keep-alive"; a client that reuses the connection races the close and fails (EPIPE/EPERM).
 *   HTTP/1.x responses therefore say `Connection: close`, so clients open a fresh connection.
 *   (HTTP/2 connections are not affected and stay open.)
 * - Any other synchronous throw from the handler answers 500 (or resets the HTTP/2 stream)
 *   instead of reaching the event loop.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import { constants, type Http2ServerRequest, type Http2ServerResponse } from "node:http2";
import type { ApiRequestHandler, ConnectionErrorHandler } from "./listener.ts";

/** Used when a request's authority is absent or not a valid host. */
export const FALLBACK_AUTHORITY = "localhost";

/** True when `authority` (host[:port]) can be the authority of an http URL. */
export function isValidAuthority(authority: string): boolean {
  if (authority === "" || /[/?#@\\\s]/.test(authority)) return false;
  try {
    return new URL(`http://${authority}/`).host !== "";
  } catch {
    return false;
  }
}

/** Makes the request's authority (HTTP/2 `:authority`, HTTP/1.1 `Host`) a valid URL host. */
export function normalizeAuthority(req: IncomingMessage | Http2ServerRequest): void {
  if ("authority" in req) {
    const authority = req.authority;
    if (typeof authority === "string" && isValidAuthority(authority)) return;
    // The compat request reads `authority` through a getter; an own property shadows it.
    Object.defineProperty(req, "authority", { value: FALLBACK_AUTHORITY, configurable: true });
    req.headers[":authority"] = FALLBACK_AUTHORITY;
    return;
  }
  const host = req.headers.host;
  if (typeof host !== "string" || !isValidAuthority(host)) req.headers.host = FALLBACK_AUTHORITY;
}

/** `handler` with authority normalisation and a catch for synchronous throws. */
export function guardHandler(
  handler: ApiRequestHandler,
  onError: ConnectionErrorHandler = () => {},
): ApiRequestHandler {
  return (req, res) => {
    try {
      normalizeAuthority(req);
      if (req.httpVersionMajor === 1) res.setHeader("connection", "close");
      handler(req, res);
    } catch (error) {
      onError(error instanceof Error ? error : new Error(String(error)));
      failResponse(res);
    }
  };
}

function failResponse(res: ServerResponse | Http2ServerResponse): void {
  try {
    if (!res.headersSent) {
      res.writeHead(500, { "content-type": "text/plain; charset=utf-8" });
      res.end("internal server error\n");
    } else if ("stream" in res) {
      res.stream.close(constants.NGHTTP2_INTERNAL_ERROR);
    } else {
      res.destroy();
    }
  } catch {
    // The connection is already gone; nothing left to tell the client.
  }
}
