/**
 * What a plain HTTP/1.1 listener does with slow, oversized or malformed requests, so that abuse
 * gets a clear answer and never holds a connection forever:
 *
 * - a request (headers and body) must arrive within `requestTimeoutMs`, else 408;
 * - headers over node's limit (16 KiB) get 431, anything unparsable 400, each `Connection: close`;
 * - a response the client stops reading is dropped after `requestTimeoutMs` without progress;
 * - at most `maxConnections` connections at once; the listener drops those past it;
 * - an idle keep-alive connection is closed after `requestTimeoutMs`.
 *
 * Upgraded connections (/ts2021, /derp) leave the HTTP server at the upgrade, so none of this
 * reaches them, and neither does it the long polls inside Noise.
 */
import type { IncomingMessage, Server, ServerOptions, ServerResponse } from "node:http";
import type { Server as NetServer, Socket } from "node:net";
import type { Duplex } from "node:stream";
import { Buffer } from "node:buffer";

export interface HttpLimits {
  /** Deadline to receive a whole request; also the write inactivity timeout. */
  requestTimeoutMs: number;
  /** Connections open at once on the listener. */
  maxConnections: number;
}

/**
 * node:http options for `limits`. Deno's node:http (like node's) enforces requestTimeout only
 * from a periodic check, every connectionsCheckingInterval (30 s by default): make it short.
 * An idle keep-alive connection stays open as long as a request may take (headscale's idle
 * timeout is its read timeout too): node's 5 s default closed connections that clients still
 * held in their pools (Go's and Deno's keep them 90 s), and a request sent as the server closed
 * one failed with the connection reset.
 */
export function httpServerOptions(limits: HttpLimits): ServerOptions {
  return {
    requestTimeout: limits.requestTimeoutMs,
    headersTimeout: limits.requestTimeoutMs,
    keepAliveTimeout: limits.requestTimeoutMs,
    connectionsCheckingInterval: Math.min(1_000, limits.requestTimeoutMs),
  };
}

/** Caps connections, answers client errors and times out responses nobody reads. */
export function applyHttpLimits(server: Server, limits: HttpLimits): void {
  limitConnections(server, limits.maxConnections);
  server.on("clientError", answerClientError);
  server.prependListener("request", (_req: IncomingMessage, res: ServerResponse) => {
    // Only a response under way is cut: a handler still waiting on its own work (the database)
    // answers by its own deadlines.
    res.setTimeout(limits.requestTimeoutMs, () => {
      if (res.headersSent) res.destroy();
    });
  });
}

/** Connections past `max` are closed as they are accepted (node's and Deno's maxConnections). */
export function limitConnections(server: NetServer, max: number): void {
  server.maxConnections = max;
}

const REASONS: Record<number, string> = {
  400: "Bad Request",
  408: "Request Timeout",
  431: "Request Header Fields Too Large",
};

/** The status for a node:http client error: 408, 431 or 400. */
export function clientErrorStatus(error: Error): number {
  const code = (error as { code?: string }).code;
  if (code === "ERR_HTTP_REQUEST_TIMEOUT") return 408;
  if (code === "HPE_HEADER_OVERFLOW") return 431;
  return 400;
}

/**
 * A `clientError` handler: answers 408/431/400 with `Connection: close` while nothing else has
 * been written on the connection, then closes it gracefully; otherwise drops it.
 */
export function answerClientError(error: Error, socket: Duplex): void {
  const code = (error as { code?: string }).code;
  const pending = (socket as { _httpMessage?: ServerResponse | null })._httpMessage;
  if (code === "ECONNRESET" || !socket.writable || pending?.headersSent) {
    socket.destroy();
    return;
  }
  const status = clientErrorStatus(error);
  const body = `${REASONS[status].toLowerCase()}\n`;
  if (pending) {
    // The request was already handed to a handler (a body that stopped arriving): answer through
    // its response, so that the handler sees headersSent and writes nothing more.
    pending.writeHead(status, {
      "content-type": "text/plain; charset=utf-8",
      "content-length": Buffer.byteLength(body),
      connection: "close",
    });
    pending.end(body);
    return;
  }
  lingeringClose(
    socket,
    `HTTP/1.1 ${status} ${REASONS[status]}\r\nContent-Type: text/plain; charset=utf-8\r\n` +
      `Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
  );
}

/**
 * Writes `answer` and half-closes, then reads and discards what the client still sends until it
 * closes (or for `lingerMs`). Closing with unread bytes would send a reset that can overtake the
 * answer (a 431 after 1 MiB of headers): the client would see a reset, not the status.
 */
export function lingeringClose(socket: Duplex, answer: string, lingerMs = 2_000): void {
  // Detach the HTTP parser: what follows is the rest of a request we refused.
  socket.removeAllListeners("data");
  socket.on("data", () => {});
  socket.once("end", () => socket.destroy());
  (socket as Partial<Socket>).setTimeout?.(lingerMs, () => socket.destroy());
  socket.resume();
  if (answer === "") socket.end();
  else socket.end(answer);
}

/**
 * Makes `res` the last response on its connection (`Connection: close`) and the close after it
 * lingering: the request's body is not read to the end (it is over a limit), and node's own
 * close would destroy the socket with those bytes unread, a reset that can overtake the answer.
 */
export function closeAfterResponse(res: ServerResponse): void {
  res.setHeader("connection", "close");
  const socket = res.socket as (Socket & { destroySoon?: () => void }) | null;
  if (socket) socket.destroySoon = () => lingeringClose(socket, "");
}
