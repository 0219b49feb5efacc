/** WebSocket variant of /ts2021 (js/wasm clients). Placeholder: refused until implemented. */
import type { IncomingMessage } from "node:http";
import type { Duplex } from "node:stream";
import type { Logger } from "../log/log.ts";

export function isWebSocketUpgrade(next: string): boolean {
  return next === "websocket";
}

export interface WebSocketAcceptOptions {
  onHandshake(initiation: Uint8Array, stream: Duplex): void;
  log?: Logger;
}

export function acceptWebSocketUpgrade(
  _req: IncomingMessage,
  socket: Duplex,
  _head: Buffer,
  _opts: WebSocketAcceptOptions,
): void {
  const body = "websocket not supported\n";
  socket.end(
    `HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n${body}`,
  );
}
