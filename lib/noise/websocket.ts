/**
 * The WebSocket variant of /ts2021, used by js/wasm clients that cannot set HTTP headers:
 * `GET /ts2021?X-Tailscale-Handshake=<base64>` with `Upgrade: websocket` and subprotocol
 * `tailscale-control-protocol`. The Noise byte stream (51-byte response, then records) rides in
 * binary messages; message boundaries mean nothing. No early payload, no compression.
 *
 * A small RFC 6455 server side: the opening handshake, and WebSocketStream, a Duplex of the
 * bytes carried in binary messages (client frames must be masked; ping is answered; close is
 * echoed; text messages and oversized frames close the connection).
 */
import { createHash } from "node:crypto";
import type { IncomingMessage } from "node:http";
import { Duplex } from "node:stream";
import type { Logger } from "../log/log.ts";

export const WEBSOCKET_SUBPROTOCOL = "tailscale-control-protocol";
const WEBSOCKET_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
/** Noise records are ≤ 4096 bytes; anything much bigger in one frame is not our client. */
export const MAX_WEBSOCKET_FRAME = 1 << 20;
/** How long a peer gets to answer our close frame before the socket is destroyed. */
const CLOSE_GRACE_MS = 1000;

const OP_CONTINUATION = 0x0;
const OP_TEXT = 0x1;
const OP_BINARY = 0x2;
const OP_CLOSE = 0x8;
const OP_PING = 0x9;
const OP_PONG = 0xa;

export function isWebSocketUpgrade(next: string): boolean {
  return next === "websocket";
}

export interface WebSocketAcceptOptions {
  /** Gets the decoded initiation and the message stream, after the 101 went out. */
  onHandshake(initiation: Uint8Array, stream: Duplex): void;
  log?: Logger;
}

/** Sec-WebSocket-Accept for a Sec-WebSocket-Key. */
export function websocketAccept(key: string): string {
  return createHash("sha1").update(key + WEBSOCKET_GUID).digest("base64");
}

function header(req: IncomingMessage, name: string): string {
  const v = req.headers[name];
  return (Array.isArray(v) ? v.join(",") : v) ?? "";
}

function refuse(socket: Duplex, status: number, reason: string): void {
  const body = reason + "\n";
  const text = status === 426 ? "Upgrade Required" : "Bad Request";
  socket.end(
    `HTTP/1.1 ${status} ${text}\r\nContent-Type: text/plain; charset=utf-8\r\n` +
      (status === 426 ? "Sec-WebSocket-Version: 13\r\n" : "") +
      `Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
  );
}

/** Validates the WebSocket opening handshake, answers 101, and hands over the stream. */
export function acceptWebSocketUpgrade(
  req: IncomingMessage,
  socket: Duplex,
  head: Buffer,
  opts: WebSocketAcceptOptions,
): void {
  if (req.method !== "GET") return refuse(socket, 400, "websocket upgrade must be a GET");
  if (header(req, "sec-websocket-version").trim() !== "13") {
    return refuse(socket, 426, "unsupported websocket version");
  }
  const key = header(req, "sec-websocket-key").trim();
  if (Buffer.from(key, "base64").length !== 16 || !/^[A-Za-z0-9+/]{22}==$/.test(key)) {
    return refuse(socket, 400, "invalid Sec-WebSocket-Key");
  }
  const protocols = header(req, "sec-websocket-protocol").split(",").map((p) => p.trim());
  if (!protocols.includes(WEBSOCKET_SUBPROTOCOL)) {
    return refuse(socket, 400, "client must speak the control subprotocol");
  }
  const query = new URL(req.url ?? "/", "http://unused").searchParams;
  const initB64 = query.get("X-Tailscale-Handshake");
  if (!initB64) return refuse(socket, 400, "missing Tailscale handshake parameter");
  if (initB64.length % 4 !== 0 || !/^[A-Za-z0-9+/]*={0,2}$/.test(initB64)) {
    return refuse(socket, 400, "invalid tailscale handshake parameter");
  }
  const initiation = new Uint8Array(Buffer.from(initB64, "base64"));

  (socket as { setNoDelay?: (v: boolean) => void }).setNoDelay?.(true);
  socket.write(
    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
      `Sec-WebSocket-Accept: ${websocketAccept(key)}\r\n` +
      `Sec-WebSocket-Protocol: ${WEBSOCKET_SUBPROTOCOL}\r\n\r\n`,
  );
  const stream = new WebSocketStream(socket, head);
  stream.on("error", (e) => opts.log?.debug("ts2021 websocket error", { error: e }));
  opts.onHandshake(initiation, stream);
}

export class WebSocketProtocolError extends Error {
  override name = "WebSocketProtocolError";
}

/** Server side of one WebSocket connection, as a Duplex of binary-message bytes. */
export class WebSocketStream extends Duplex {
  readonly #socket: Duplex;
  #pending: Buffer | null = null;
  #closeSent = false;
  /** Opcode of the fragmented message in progress, or -1. */
  #fragmentOp = -1;

  constructor(socket: Duplex, head?: Uint8Array) {
    super({ allowHalfOpen: false });
    this.#socket = socket;
    socket.on("data", this.#onData);
    socket.on("end", () => this.push(null));
    socket.on("error", (e: Error) => this.destroy(e));
    socket.on("close", () => {
      if (!this.destroyed) this.destroy();
    });
    if (head && head.length > 0) this.#onData(Buffer.from(head));
  }

  get remoteAddress(): string | undefined {
    return (this.#socket as { remoteAddress?: string }).remoteAddress;
  }

  #onData = (chunk: Buffer): void => {
    if (this.destroyed) return;
    let buf = this.#pending ? Buffer.concat([this.#pending, chunk]) : chunk;
    this.#pending = null;
    let off = 0;
    try {
      for (;;) {
        const frame = parseFrame(buf, off);
        if (frame === null) break;
        off = frame.end;
        this.#onFrame(frame.fin, frame.opcode, frame.payload);
        if (this.destroyed || this.#closeSent) return;
      }
    } catch (e) {
      this.#fail(e as Error);
      return;
    }
    if (off < buf.length) {
      buf = buf.subarray(off);
      this.#pending = Buffer.from(buf);
    }
  };

  #onFrame(fin: boolean, opcode: number, payload: Buffer): void {
    switch (opcode) {
      case OP_PING:
        this.#socket.write(encodeFrame(OP_PONG, payload));
        return;
      case OP_PONG:
        return;
      case OP_CLOSE: {
        // Echo the status code, then close (RFC 6455 §5.5.1).
        this.#sendClose(payload.length >= 2 ? payload.readUInt16BE(0) : 1000);
        this.push(null);
        return;
      }
      case OP_TEXT:
        throw new WebSocketProtocolError("text message on a binary-only connection");
      case OP_BINARY:
      case OP_CONTINUATION: {
        if (opcode === OP_BINARY && this.#fragmentOp !== -1) {
          throw new WebSocketProtocolError("new message inside a fragmented one");
        }
        if (opcode === OP_CONTINUATION && this.#fragmentOp === -1) {
          throw new WebSocketProtocolError("continuation frame without a message");
        }
        this.#fragmentOp = fin ? -1 : OP_BINARY;
        if (payload.length > 0 && !this.push(payload)) this.#socket.pause();
        return;
      }
      default:
        throw new WebSocketProtocolError(`unknown opcode ${opcode}`);
    }
  }

  #sendClose(code: number, reason = ""): void {
    if (this.#closeSent) return;
    this.#closeSent = true;
    const body = Buffer.alloc(2 + Buffer.byteLength(reason));
    body.writeUInt16BE(code, 0);
    body.write(reason, 2);
    this.#socket.end(encodeFrame(OP_CLOSE, body));
  }

  #fail(e: Error): void {
    const code = e instanceof WebSocketProtocolError && /text/.test(e.message) ? 1003 : 1002;
    this.#sendClose(code, "protocol error");
    this.destroy(e);
  }

  override _read(): void {
    this.#socket.resume();
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (e?: Error | null) => void): void {
    if (this.#closeSent) return cb(new WebSocketProtocolError("websocket is closing"));
    this.#socket.write(encodeFrame(OP_BINARY, chunk), (e) => cb(e ?? null));
  }

  override _final(cb: (e?: Error | null) => void): void {
    this.#sendClose(1000);
    cb();
  }

  override _destroy(err: Error | null, cb: (e?: Error | null) => void): void {
    this.#pending = null;
    // Give a pending close frame a chance to go out; destroy if the peer does not close.
    const socket = this.#socket;
    if (this.#closeSent && !socket.destroyed) {
      const timer = setTimeout(() => socket.destroy(), CLOSE_GRACE_MS);
      socket.once("close", () => clearTimeout(timer));
    } else socket.destroy();
    cb(err);
  }
}

interface Frame {
  fin: boolean;
  opcode: number;
  payload: Buffer;
  end: number;
}

/** One client frame starting at `off`, unmasked; null if incomplete. Throws on violations. */
function parseFrame(buf: Buffer, off: number): Frame | null {
  if (buf.length - off < 2) return null;
  const b0 = buf[off];
  const b1 = buf[off + 1];
  if (b0 & 0x70) throw new WebSocketProtocolError("reserved bits set (no extensions agreed)");
  if (!(b1 & 0x80)) throw new WebSocketProtocolError("client frame is not masked");
  const opcode = b0 & 0x0f;
  const fin = (b0 & 0x80) !== 0;
  let len = b1 & 0x7f;
  let pos = off + 2;
  if (len === 126) {
    if (buf.length - pos < 2) return null;
    len = buf.readUInt16BE(pos);
    pos += 2;
  } else if (len === 127) {
    if (buf.length - pos < 8) return null;
    const hi = buf.readUInt32BE(pos);
    const lo = buf.readUInt32BE(pos + 4);
    if (hi !== 0 || lo > MAX_WEBSOCKET_FRAME) {
      throw new WebSocketProtocolError("websocket frame too large");
    }
    len = lo;
    pos += 8;
  }
  if (len > MAX_WEBSOCKET_FRAME) throw new WebSocketProtocolError("websocket frame too large");
  if (opcode >= 0x8 && (len > 125 || !fin)) {
    throw new WebSocketProtocolError("invalid control frame");
  }
  if (buf.length - pos < 4 + len) return null;
  const mask = buf.subarray(pos, pos + 4);
  pos += 4;
  const payload = Buffer.allocUnsafe(len);
  for (let i = 0; i < len; i++) payload[i] = buf[pos + i] ^ mask[i & 3];
  return { fin, opcode, payload, end: pos + len };
}

/** A server frame (unmasked, FIN set). */
export function encodeFrame(opcode: number, payload: Uint8Array): Buffer {
  const len = payload.length;
  const headLen = len < 126 ? 2 : len < 0x10000 ? 4 : 10;
  const out = Buffer.allocUnsafe(headLen + len);
  out[0] = 0x80 | opcode;
  if (len < 126) out[1] = len;
  else if (len < 0x10000) {
    out[1] = 126;
    out.writeUInt16BE(len, 2);
  } else {
    out[1] = 127;
    out.writeUInt32BE(Math.floor(len / 0x1_0000_0000), 2);
    out.writeUInt32BE(len >>> 0, 6);
  }
  out.set(payload, headLen);
  return out;
}
