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
 * `onFrame` gets the whole frame, header included; `payload` is `frame.subarray(5)`. Frames
 * inside one pushed chunk are subarrays of it; a frame split over chunks is gathered into a
 * buffer that grows with the bytes actually received (never to the announced size up front).
 */
export class FrameReader {
  /** Bytes of an incomplete frame (capacity grows by doubling). */
  private partial: Uint8Array = EMPTY;
  private filled = 0;
  /** Total length of the partial frame once its header is known; 0 before that. */
  private want = 0;
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
    return this.filled;
  }

  push(chunk: Uint8Array): void {
    while (!this.failed && chunk.length > 0) {
      if (this.skipRemaining > 0) {
        const n = Math.min(this.skipRemaining, chunk.length);
        this.skipRemaining -= n;
        chunk = chunk.subarray(n);
      } else if (this.filled > 0) {
        chunk = this.fillPartial(chunk);
      } else {
        this.parse(chunk);
        return;
      }
    }
  }

  /** Adds bytes to the held frame, delivering it when complete; returns the unused rest. */
  private fillPartial(chunk: Uint8Array): Uint8Array {
    if (this.want === 0) {
      const n = Math.min(FRAME_HEADER_LEN - this.filled, chunk.length);
      this.append(chunk.subarray(0, n));
      chunk = chunk.subarray(n);
      if (this.filled < FRAME_HEADER_LEN) return chunk;
      const len = readU32(this.partial, 1);
      const verdict = this.classify(this.partial[0], len);
      if (verdict instanceof FrameError) {
        this.fail(verdict);
        return EMPTY;
      }
      if (verdict === "skip") {
        this.resetPartial();
        this.skipRemaining = len;
        return chunk;
      }
      this.want = FRAME_HEADER_LEN + len;
    }
    const n = Math.min(this.want - this.filled, chunk.length);
    this.append(chunk.subarray(0, n));
    if (this.filled < this.want) return EMPTY;
    const frame = this.partial.subarray(0, this.want);
    this.resetPartial();
    this.onFrame(frame[0], frame.subarray(FRAME_HEADER_LEN), frame);
    return chunk.subarray(n);
  }

  private append(bytes: Uint8Array): void {
    const need = this.filled + bytes.length;
    if (need > this.partial.length) {
      const limit = this.want || need;
      const grown = new Uint8Array(Math.min(limit, Math.max(need, this.partial.length * 2, 256)));
      grown.set(this.partial.subarray(0, this.filled));
      this.partial = grown;
    }
    this.partial.set(bytes, this.filled);
    this.filled = need;
  }

  private resetPartial(): void {
    this.partial = EMPTY;
    this.filled = 0;
    this.want = 0;
  }

  private parse(buf: Uint8Array): void {
    let off = 0;
    let total = 0;
    while (!this.failed) {
      const left = buf.length - off;
      total = 0;
      if (left < FRAME_HEADER_LEN) break;
      const type = buf[off];
      const len = readU32(buf, off + 1);
      const verdict = this.classify(type, len);
      if (verdict instanceof FrameError) {
        this.fail(verdict);
        return;
      }
      total = FRAME_HEADER_LEN + len;
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
    // The start of a frame (or of its header) that continues in the next chunk.
    this.want = total;
    this.append(buf.subarray(off));
  }

  private fail(err: FrameError): void {
    this.failed = true;
    this.resetPartial();
    this.onError(err);
  }
}

const EMPTY = new Uint8Array(0);

function readU32(b: Uint8Array, off: number): number {
  return ((b[off] << 24) >>> 0) + (b[off + 1] << 16) + (b[off + 2] << 8) + b[off + 3];
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
