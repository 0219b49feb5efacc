/**
 * Tells HTTP/2 with prior knowledge (h2c, what gRPC clients speak on a unix socket) from HTTP/1.1
 * by the first bytes of a connection: every HTTP/2 connection opens with the fixed client preface.
 */
import type { Socket } from "node:net";
import { Buffer } from "node:buffer";

/** RFC 9113 §3.4: the 24 bytes every HTTP/2 client sends first. */
export const HTTP2_CLIENT_PREFACE: Uint8Array = new TextEncoder().encode(
  "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
);

export type WireProtocol = "h2" | "http/1.1";

/**
 * Classifies the bytes read so far: "h2" once the whole preface has arrived, "http/1.1" as soon
 * as a byte differs from it, undefined while the bytes are still a strict prefix of it.
 */
export function classifyPrefix(bytes: Uint8Array): WireProtocol | undefined {
  const length = Math.min(bytes.length, HTTP2_CLIENT_PREFACE.length);
  for (let i = 0; i < length; i++) {
    if (bytes[i] !== HTTP2_CLIENT_PREFACE[i]) return "http/1.1";
  }
  return length === HTTP2_CLIENT_PREFACE.length ? "h2" : undefined;
}

export class PrefaceError extends Error {
  override name = "PrefaceError";
}

export interface SniffOptions {
  /** Give up on a connection that sends too little for this long (default 10 s). */
  timeoutMs?: number;
}

/**
 * Reads from `socket` until its protocol is known, then puts every byte read back (unshift) and
 * leaves the socket paused, ready to be handed to an HTTP server with `emit("connection")`.
 * Rejects with PrefaceError if the peer closes, errors or stays silent first.
 */
export function sniffProtocol(socket: Socket, options: SniffOptions = {}): Promise<WireProtocol> {
  const timeoutMs = options.timeoutMs ?? 10_000;
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let settled = false;
    const timer = setTimeout(
      () => finish(new PrefaceError(`no request within ${timeoutMs} ms`)),
      timeoutMs,
    );

    function finish(outcome: WireProtocol | Error): void {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.off("data", onData);
      socket.off("end", onEnd);
      socket.off("close", onEnd);
      socket.off("error", onError);
      if (outcome instanceof Error) return reject(outcome);
      socket.pause();
      socket.unshift(Buffer.concat(chunks));
      resolve(outcome);
    }
    function onData(chunk: Buffer): void {
      chunks.push(chunk);
      const protocol = classifyPrefix(chunks.length === 1 ? chunk : Buffer.concat(chunks));
      if (protocol !== undefined) finish(protocol);
    }
    function onEnd(): void {
      finish(new PrefaceError("connection closed before a request arrived"));
    }
    function onError(error: Error): void {
      finish(new PrefaceError(`connection failed before a request arrived: ${error.message}`));
    }

    socket.on("data", onData);
    socket.on("end", onEnd);
    socket.on("close", onEnd);
    socket.on("error", onError);
  });
}
