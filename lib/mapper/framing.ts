/**
 * MapResponse stream framing: a 4-byte little-endian length, then the payload, which is zstd
 * compressed JSON when the client asked for "zstd" (modern clients always do). A message sent to
 * many sessions is encoded once and the bytes shared.
 */
import { constants, zstdCompressSync, zstdDecompressSync } from "node:zlib";

const encoder = new TextEncoder();
/** Fastest level: map payloads are big and sent often; ratio is still good on JSON. */
const ZSTD_OPTS = { params: { [constants.ZSTD_c_compressionLevel]: 1 } };

/**
 * Payloads up to this size go as a stored zstd frame (one raw block, no compression): a peer
 * change of ~200 bytes shrinks by a few dozen bytes at most, while every receiver would read a
 * Huffman table to decode it. A lone change reaches every peer, so that decoding is the tailnet's.
 */
export const STORED_MAX = 1024;

/**
 * A message of more than STORED_MAX and up to this many characters goes to its first
 * STORED_SENDS sessions as a stored frame too, and is compressed only when a further session
 * gets it. A flush in churn builds one message for everyone and one for each changed node (all
 * changes but its own, sent to it alone): some 30 compressions of ~2 KB (~40 µs each, a fresh
 * zstd context) for messages read once.
 */
export const STORED_FIRST_MAX = 4096;
export const STORED_SENDS = 4;

export function encodeFrame(json: string, zstd: boolean): Uint8Array {
  const raw = encoder.encode(json);
  const payload = !zstd
    ? raw
    : raw.length <= STORED_MAX
    ? storedZstdFrame(raw)
    : zstdCompressSync(raw, ZSTD_OPTS);
  return lengthPrefixed(payload);
}

function lengthPrefixed(payload: Uint8Array): Uint8Array {
  const frame = new Uint8Array(4 + payload.byteLength);
  new DataView(frame.buffer).setUint32(0, payload.byteLength, true);
  frame.set(payload, 4);
  return frame;
}

/**
 * A zstd frame (RFC 8878) holding `raw` as one raw block: single segment, the content size in
 * the header (1 byte below 256, else 2 bytes as size - 256), no checksum. Up to 65,791 bytes.
 */
export function storedZstdFrame(raw: Uint8Array): Uint8Array {
  if (raw.length > 65_791) throw new RangeError("stored zstd frame of more than 65,791 bytes");
  const fcs = raw.length < 256 ? 1 : 2;
  const out = new Uint8Array(4 + 1 + fcs + 3 + raw.length);
  out.set([0x28, 0xb5, 0x2f, 0xfd], 0); // magic 0xFD2FB528, little-endian
  out[4] = (fcs === 1 ? 0 : 1) << 6 | 1 << 5; // FCS field size flag, single segment
  let off = 5;
  if (fcs === 1) out[off++] = raw.length;
  else {
    const v = raw.length - 256;
    out[off++] = v & 0xff;
    out[off++] = v >> 8;
  }
  const header = raw.length << 3 | 1; // block size, raw (type 0), last block
  out[off++] = header & 0xff;
  out[off++] = (header >> 8) & 0xff;
  out[off++] = header >> 16;
  out.set(raw, off);
  return out;
}

/**
 * Frames already-compressed parts (zstd frames concatenated decode as one payload): the length
 * header, then the parts themselves, not copied into one buffer.
 */
export function frameParts(parts: readonly Uint8Array[]): Uint8Array[] {
  const total = parts.reduce((n, p) => n + p.byteLength, 0);
  const header = new Uint8Array(4);
  new DataView(header.buffer).setUint32(0, total, true);
  return [header, ...parts];
}

/** A message with its encodings computed at most once each. */
export class SharedMessage {
  private zstdFrame: Uint8Array | null = null;
  private plainFrame: Uint8Array | null = null;
  /** A prebuilt zstd frame in pieces (frameParts), kept apart until one buffer is asked for. */
  private zstdPieces: readonly Uint8Array[] | null;
  private text: string | (() => string);
  /** A mid-sized message's stored frame, for its first sends (STORED_FIRST_MAX). */
  private storedFrame: Uint8Array | null = null;
  private storedSends = 0;

  /** `json` may be computed lazily when a prebuilt zstd frame is given. */
  constructor(json: string | (() => string), zstdFrame?: Uint8Array | readonly Uint8Array[]) {
    this.text = json;
    if (zstdFrame instanceof Uint8Array) this.zstdFrame = zstdFrame;
    this.zstdPieces = zstdFrame instanceof Uint8Array ? null : zstdFrame ?? null;
  }

  get json(): string {
    if (typeof this.text !== "string") this.text = this.text();
    return this.text;
  }

  frame(zstd: boolean): Uint8Array {
    if (zstd) {
      return this.zstdFrame ??= this.zstdPieces
        ? Buffer.concat(this.zstdPieces)
        : encodeFrame(this.json, true);
    }
    return this.plainFrame ??= encodeFrame(this.json, false);
  }

  /**
   * The frame for one more session, as pieces to write in order: a full map's cached slices are
   * not copied; a mid-sized message goes stored to its first few sessions (STORED_FIRST_MAX).
   */
  framePieces(zstd: boolean): Uint8Array | readonly Uint8Array[] {
    if (zstd && !this.zstdFrame) {
      if (this.zstdPieces) return this.zstdPieces;
      const n = this.json.length;
      if (this.storedSends < STORED_SENDS && n > STORED_MAX && n <= STORED_FIRST_MAX) {
        this.storedSends++;
        return this.storedFrame ??= lengthPrefixed(storedZstdFrame(encoder.encode(this.json)));
      }
    }
    return this.frame(zstd);
  }
}

export const KEEP_ALIVE = new SharedMessage('{"KeepAlive":true}');

/**
 * Splits a byte stream into frames and decodes them; for tests and our own minimal client.
 * Returns the complete frames' JSON texts and the unconsumed remainder.
 */
export function decodeFrames(
  buf: Uint8Array,
  zstd: boolean,
): { messages: string[]; rest: Uint8Array } {
  const messages: string[] = [];
  const decoder = new TextDecoder();
  let off = 0;
  while (buf.byteLength - off >= 4) {
    const len = new DataView(buf.buffer, buf.byteOffset + off, 4).getUint32(0, true);
    if (buf.byteLength - off - 4 < len) break;
    const payload = buf.subarray(off + 4, off + 4 + len);
    const text = zstd
      ? splitZstdFrames(payload).map((f) => decoder.decode(zstdDecompressSync(f))).join("")
      : decoder.decode(payload);
    messages.push(text);
    off += 4 + len;
  }
  return { messages, rest: buf.subarray(off) };
}

/**
 * Splits concatenated zstd frames (RFC 8878 §3.1) by walking frame and block headers, for
 * decoders that stop after the first frame. Throws on a malformed frame.
 */
export function splitZstdFrames(buf: Uint8Array): Uint8Array[] {
  const frames: Uint8Array[] = [];
  let off = 0;
  const need = (n: number) => {
    if (off + n > buf.byteLength) throw new Error("truncated zstd frame");
  };
  while (off < buf.byteLength) {
    const start = off;
    need(5);
    const magic = buf[off] | buf[off + 1] << 8 | buf[off + 2] << 16 | buf[off + 3] << 24;
    off += 4;
    if ((magic >>> 4) === 0x184d2a5) { // skippable frame
      need(4);
      const size = (buf[off] | buf[off + 1] << 8 | buf[off + 2] << 16 | buf[off + 3] << 24) >>> 0;
      off += 4 + size;
      need(0);
      frames.push(buf.subarray(start, off));
      continue;
    }
    if (magic >>> 0 !== 0xfd2fb528) throw new Error("not a zstd frame");
    const fhd = buf[off++];
    const fcsFlag = fhd >> 6;
    const singleSegment = (fhd >> 5) & 1;
    const checksum = (fhd >> 2) & 1;
    const dictIdSize = [0, 1, 2, 4][fhd & 3];
    const fcsSize = [singleSegment ? 1 : 0, 2, 4, 8][fcsFlag];
    off += (singleSegment ? 0 : 1) + dictIdSize + fcsSize;
    for (;;) {
      need(3);
      const header = buf[off] | buf[off + 1] << 8 | buf[off + 2] << 16;
      off += 3;
      const last = header & 1;
      const type = (header >> 1) & 3;
      const size = header >> 3;
      off += type === 1 ? 1 : size; // RLE blocks carry one byte
      need(0);
      if (last) break;
    }
    if (checksum) off += 4;
    need(0);
    frames.push(buf.subarray(start, off));
  }
  return frames;
}
