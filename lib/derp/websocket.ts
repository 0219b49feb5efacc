/**
 * Minimal WebSocket (RFC 6455) byte stream for DERP over WebSocket: binary messages carry the
 * DERP byte stream, message boundaries mean nothing. No extensions, no compression. Used by
 * the server (`handleDerpUpgrade`) and by our test client.
 */
import { createHash } from "node:crypto";
import { Duplex } from "node:stream";

const GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
/** Largest single frame accepted; DERP writes are far smaller. */
const MAX_FRAME_PAYLOAD = 1 << 20;

const Op = { Continuation: 0x0, Text: 0x1, Binary: 0x2, Close: 0x8, Ping: 0x9, Pong: 0xa };

/** Sec-WebSocket-Accept for a Sec-WebSocket-Key. */
export function webSocketAccept(key: string): string {
  return createHash("sha1").update(key + GUID).digest("base64");
}

export type WebSocketRole = "server" | "client";

/** Socket-like fields the DERP server reads for logging. */
export interface WebSocketStreamOptions {
  role: WebSocketRole;
  remoteAddress?: string;
}

/**
 * A Duplex of the bytes inside binary messages on `socket`. Reads unmask in place (the
 * stream owns the socket's chunks); each write (or corked batch) goes out as one message.
 */
export class WebSocketStream extends Duplex {
  readonly remoteAddress?: string;
  private readonly role: WebSocketRole;
  /** Start of a frame split over reads (capacity grows by doubling). */
  private held: Uint8Array = new Uint8Array(0);
  private heldLen = 0;
  private closeSent = false;

  constructor(private readonly socket: Duplex, opts: WebSocketStreamOptions) {
    super({ allowHalfOpen: false });
    this.role = opts.role;
    this.remoteAddress = opts.remoteAddress;
    socket.on("data", (chunk: Uint8Array) => this.onData(chunk));
    socket.on("end", () => this.push(null));
    socket.on("error", (e) => this.destroy(e));
    socket.on("close", () => this.destroy());
    socket.on("drain", () => this.emit("socketDrain"));
  }

  /** Feeds bytes that arrived with the HTTP upgrade. */
  feed(head: Uint8Array): void {
    if (head.length > 0) this.onData(head);
  }

  override _read(): void {}

  override _write(chunk: Uint8Array, _enc: BufferEncoding, cb: (e?: Error | null) => void): void {
    this.sendMessage(Op.Binary, [chunk], chunk.length, cb);
  }

  override _writev(
    chunks: { chunk: Uint8Array }[],
    cb: (e?: Error | null) => void,
  ): void {
    let total = 0;
    const parts = chunks.map((c) => {
      total += c.chunk.length;
      return c.chunk;
    });
    this.sendMessage(Op.Binary, parts, total, cb);
  }

  override _final(cb: (e?: Error | null) => void): void {
    this.sendClose(1000);
    this.socket.end();
    cb();
  }

  override _destroy(err: Error | null, cb: (e?: Error | null) => void): void {
    this.socket.destroy();
    cb(err);
  }

  /**
   * Writes one message. Completion waits for the socket to drain when it is backed up, so
   * this stream's writableLength shows the backlog to the DERP server.
   */
  private sendMessage(
    op: number,
    parts: Uint8Array[],
    total: number,
    cb?: (e?: Error | null) => void,
  ): void {
    if (this.socket.destroyed) {
      cb?.(new Error("websocket closed"));
      return;
    }
    const masked = this.role === "client";
    const header = frameHeader(op, total, masked);
    let ok: boolean;
    if (masked) {
      const mask = header.subarray(header.length - 4);
      crypto.getRandomValues(mask);
      const body = new Uint8Array(total);
      let off = 0;
      for (const p of parts) {
        body.set(p, off);
        off += p.length;
      }
      applyMask(body, mask, 0);
      this.socket.write(header);
      ok = this.socket.write(body);
    } else {
      this.socket.cork();
      this.socket.write(header);
      ok = true;
      for (const p of parts) ok = this.socket.write(p);
      this.socket.uncork();
    }
    if (!cb) return;
    if (ok) cb();
    else this.once("socketDrain", () => cb());
  }

  private sendClose(code: number): void {
    if (this.closeSent || this.socket.destroyed) return;
    this.closeSent = true;
    const body = Uint8Array.of(code >> 8, code & 0xff);
    this.sendMessage(Op.Close, [body], 2);
  }

  private fail(code: number): void {
    this.sendClose(code);
    this.socket.end();
    this.destroy(new Error(`websocket protocol error (${code})`));
  }

  private onData(chunk: Uint8Array): void {
    if (this.heldLen > 0) {
      this.hold(chunk);
      if (this.heldLen < this.heldNeed()) return;
      chunk = this.held.subarray(0, this.heldLen);
      this.held = new Uint8Array(0);
      this.heldLen = 0;
    }
    let off = 0;
    while (off < chunk.length && !this.destroyed) {
      const f = parseFrameHeader(chunk, off);
      if (f === null) break; // header incomplete
      if (f === "bad") return this.fail(1002);
      if (f.length > MAX_FRAME_PAYLOAD) return this.fail(1009);
      if (this.role === "server" && !f.masked) return this.fail(1002);
      const end = f.payloadStart + f.length;
      if (end > chunk.length) break;
      const payload = chunk.subarray(f.payloadStart, end);
      if (f.masked) applyMask(payload, chunk.subarray(f.payloadStart - 4, f.payloadStart), 0);
      off = end;
      this.onFrame(f.op, payload);
    }
    if (off < chunk.length && !this.destroyed) this.hold(chunk.subarray(off));
  }

  private hold(bytes: Uint8Array): void {
    const need = this.heldLen + bytes.length;
    if (need > this.held.length) {
      const grown = new Uint8Array(Math.max(need, this.held.length * 2, 256));
      grown.set(this.held.subarray(0, this.heldLen));
      this.held = grown;
    }
    this.held.set(bytes, this.heldLen);
    this.heldLen = need;
  }

  /** Bytes needed before the held frame can be parsed (header + payload once known). */
  private heldNeed(): number {
    const f = parseFrameHeader(this.held.subarray(0, this.heldLen), 0);
    if (f === null) return this.heldLen + 1;
    if (f === "bad" || f.length > MAX_FRAME_PAYLOAD) return 0; // parse now and fail
    return f.payloadStart + f.length;
  }

  private onFrame(op: number, payload: Uint8Array): void {
    switch (op) {
      case Op.Binary:
      case Op.Continuation:
        if (payload.length > 0) this.push(payload);
        return;
      case Op.Text:
        return this.fail(1003);
      case Op.Ping:
        this.sendMessage(Op.Pong, [payload.slice()], payload.length);
        return;
      case Op.Pong:
        return;
      case Op.Close:
        this.sendClose(1000);
        this.socket.end();
        this.push(null);
        return;
      default:
        return this.fail(1002);
    }
  }
}

function frameHeader(op: number, len: number, masked: boolean): Uint8Array {
  const maskLen = masked ? 4 : 0;
  const lenBytes = len < 126 ? 0 : len < 65536 ? 2 : 8;
  const h = new Uint8Array(2 + lenBytes + maskLen);
  h[0] = 0x80 | op;
  const maskBit = masked ? 0x80 : 0;
  if (lenBytes === 0) h[1] = maskBit | len;
  else if (lenBytes === 2) {
    h[1] = maskBit | 126;
    h[2] = len >> 8;
    h[3] = len & 0xff;
  } else {
    h[1] = maskBit | 127;
    new DataView(h.buffer).setBigUint64(2, BigInt(len));
  }
  return h;
}

interface FrameHead {
  op: number;
  masked: boolean;
  length: number;
  payloadStart: number;
}

function parseFrameHeader(b: Uint8Array, off: number): FrameHead | "bad" | null {
  if (b.length - off < 2) return null;
  const b0 = b[off], b1 = b[off + 1];
  if (b0 & 0x70) return "bad"; // reserved bits: no extensions were negotiated
  const masked = (b1 & 0x80) !== 0;
  let len = b1 & 0x7f;
  let p = off + 2;
  if (len === 126) {
    if (b.length - p < 2) return null;
    len = (b[p] << 8) | b[p + 1];
    p += 2;
  } else if (len === 127) {
    if (b.length - p < 8) return null;
    const big = new DataView(b.buffer, b.byteOffset + p, 8).getBigUint64(0);
    len = big > BigInt(MAX_FRAME_PAYLOAD) ? MAX_FRAME_PAYLOAD + 1 : Number(big);
    p += 8;
  }
  if (masked) {
    if (b.length - p < 4) return null;
    p += 4;
  }
  return { op: b0 & 0x0f, masked, length: len, payloadStart: p };
}

function applyMask(data: Uint8Array, mask: Uint8Array, offset: number): void {
  for (let i = 0; i < data.length; i++) data[i] ^= mask[(i + offset) & 3];
}
