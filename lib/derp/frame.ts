/**
 * DERP wire format: a 5-byte header (type u8, payload length u32 big-endian) and a payload. The
 * reader turns a byte stream into whole frames, handing out subarrays of the received chunks
 * whenever a frame sits inside one chunk, so forwarding does not copy packets.
 */

export const FrameType = {
  ServerKey: 0x01,
  ClientInfo: 0x02,
  ServerInfo: 0x03,
  SendPacket: 0x04,
  RecvPacket: 0x05,
  KeepAlive: 0x06,
  NotePreferred: 0x07,
  PeerGone: 0x08,
  PeerPresent: 0x09,
  ForwardPacket: 0x0a,
  WatchConns: 0x10,
  ClosePeer: 0x11,
  Ping: 0x12,
  Pong: 0x13,
  Health: 0x14,
  Restarting: 0x15,
} as const;

export const PeerGoneReason = { Disconnected: 0x00, NotHere: 0x01 } as const;

export const FRAME_HEADER_LEN = 5;
export const KEY_LEN = 32;
export const NONCE_LEN = 24;
/** Largest packet a client may relay (bytes after the destination key). */
export const MAX_PACKET_SIZE = 64 << 10;
/** "DERP🔑", the magic at the start of the ServerKey frame. */
export const MAGIC = new Uint8Array([0x44, 0x45, 0x52, 0x50, 0xf0, 0x9f, 0x94, 0x91]);
/** "TS💬", the start of a disco packet (then the sender's disco key and a nonce). */
export const DISCO_MAGIC = new Uint8Array([0x54, 0x53, 0xf0, 0x9f, 0x92, 0xac]);
const DISCO_MIN_LEN = DISCO_MAGIC.length + KEY_LEN + NONCE_LEN;
export const PROTOCOL_VERSION = 2;

export class FrameError extends Error {
  override name = "FrameError";
}

/** What the reader does with a frame, decided from its header alone. */
export type FrameVerdict = "deliver" | "skip" | FrameError;

/**
 * Incremental frame parser. `classify` sees each header before any payload is buffered, so
 * oversized frames are refused (or unknown ones skipped) without holding their bytes.
 * `onFrame` gets the whole frame, header included; `payload` is `frame.subarray(5)`.
 */
export class FrameReader {
  private pending: Uint8Array[] = [];
  private pendingBytes = 0;
  /** Payload bytes still to throw away for a skipped frame. */
  private skipRemaining = 0;
  private failed = false;

  constructor(
    private readonly classify: (type: number, length: number) => FrameVerdict,
    private readonly onFrame: (type: number, payload: Uint8Array, frame: Uint8Array) => void,
    private readonly onError: (err: FrameError) => void,
  ) {}

  /** Bytes held back waiting for the rest of a frame. */
  get buffered(): number {
    return this.pendingBytes;
  }

  push(chunk: Uint8Array): void {
    if (this.failed) return;
    if (this.skipRemaining > 0) {
      const n = Math.min(this.skipRemaining, chunk.length);
      this.skipRemaining -= n;
      chunk = chunk.subarray(n);
      if (chunk.length === 0) return;
    }
    if (this.pendingBytes > 0) {
      this.pending.push(chunk);
      this.pendingBytes += chunk.length;
      chunk = this.takePendingFrame();
      if (chunk.length === 0) return;
    }
    this.parse(chunk);
  }

  /**
   * With bytes held from earlier chunks: once the header is complete, either start skipping
   * or, when the whole frame is here, join exactly that frame (the only copy the reader makes)
   * and deliver it. Returns the bytes after it for `parse` (empty when still waiting).
   */
  private takePendingFrame(): Uint8Array {
    if (this.pendingBytes < FRAME_HEADER_LEN) return EMPTY;
    const head = this.pending[0].length >= FRAME_HEADER_LEN
      ? this.pending[0]
      : concat(this.pending, FRAME_HEADER_LEN);
    const type = head[0];
    const len = readU32(head, 1);
    const verdict = this.classify(type, len);
    if (verdict instanceof FrameError) {
      this.fail(verdict);
      return EMPTY;
    }
    const total = FRAME_HEADER_LEN + len;
    if (verdict === "deliver" && this.pendingBytes < total) return EMPTY;
    const parts = this.pending;
    const held = this.pendingBytes;
    this.pending = [];
    this.pendingBytes = 0;
    if (verdict === "skip" && held < total) {
      this.skipRemaining = total - held;
      return EMPTY;
    }
    const last = parts[parts.length - 1];
    const rest = last.subarray(last.length - (held - total));
    if (verdict === "deliver") {
      const frame = concat(parts, total);
      this.onFrame(type, frame.subarray(FRAME_HEADER_LEN), frame);
    }
    return rest;
  }

  private parse(buf: Uint8Array): void {
    let off = 0;
    while (!this.failed) {
      const left = buf.length - off;
      if (left < FRAME_HEADER_LEN) break;
      const type = buf[off];
      const len = readU32(buf, off + 1);
      const verdict = this.classify(type, len);
      if (verdict instanceof FrameError) {
        this.fail(verdict);
        return;
      }
      const total = FRAME_HEADER_LEN + len;
      if (verdict === "skip") {
        if (left >= total) {
          off += total;
          continue;
        }
        this.skipRemaining = total - left;
        return;
      }
      if (left < total) break;
      const frame = buf.subarray(off, off + total);
      off += total;
      this.onFrame(type, frame.subarray(FRAME_HEADER_LEN), frame);
    }
    if (this.failed || off === buf.length) return;
    const rest = buf.subarray(off);
    this.pending = [rest];
    this.pendingBytes = rest.length;
  }

  private fail(err: FrameError): void {
    this.failed = true;
    this.pending = [];
    this.pendingBytes = 0;
    this.onError(err);
  }
}

const EMPTY = new Uint8Array(0);

function readU32(b: Uint8Array, off: number): number {
  return ((b[off] << 24) >>> 0) + (b[off + 1] << 16) + (b[off + 2] << 8) + b[off + 3];
}

/** The first `total` bytes of `parts`, joined. */
function concat(parts: Uint8Array[], total: number): Uint8Array {
  const out = new Uint8Array(total);
  let off = 0;
  for (const p of parts) {
    if (off >= total) break;
    const n = Math.min(p.length, total - off);
    out.set(n === p.length ? p : p.subarray(0, n), off);
    off += n;
  }
  return out;
}

export function writeHeader(buf: Uint8Array, off: number, type: number, len: number): void {
  buf[off] = type;
  buf[off + 1] = len >>> 24;
  buf[off + 2] = (len >>> 16) & 0xff;
  buf[off + 3] = (len >>> 8) & 0xff;
  buf[off + 4] = len & 0xff;
}

/** A whole frame in one new buffer. */
export function encodeFrame(type: number, ...parts: Uint8Array[]): Uint8Array {
  let len = 0;
  for (const p of parts) len += p.length;
  const out = new Uint8Array(FRAME_HEADER_LEN + len);
  writeHeader(out, 0, type, len);
  let off = FRAME_HEADER_LEN;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}

export function looksLikeDisco(packet: Uint8Array): boolean {
  if (packet.length < DISCO_MIN_LEN) return false;
  for (let i = 0; i < DISCO_MAGIC.length; i++) if (packet[i] !== DISCO_MAGIC[i]) return false;
  return true;
}

export function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
