/**
 * MapResponse stream framing: a 4-byte little-endian length, then the payload, which is zstd
 * compressed JSON when the client asked for "zstd" (modern clients always do). A message sent to
 * many sessions is encoded once and the bytes shared.
 */
import { constants, zstdCompressSync, zstdDecompressSync } from "node:zlib";

const encoder = new TextEncoder();
/** Fastest level: map payloads are big and sent often; ratio is still good on JSON. */
const ZSTD_OPTS = { params: { [constants.ZSTD_c_compressionLevel]: 1 } };

export function encodeFrame(json: string, zstd: boolean): Uint8Array {
  const raw = encoder.encode(json);
  const payload = zstd ? zstdCompressSync(raw, ZSTD_OPTS) : raw;
  const frame = new Uint8Array(4 + payload.byteLength);
  new DataView(frame.buffer).setUint32(0, payload.byteLength, true);
  frame.set(payload, 4);
  return frame;
}

/** A message with its encodings computed at most once each. */
export class SharedMessage {
  private zstdFrame: Uint8Array | null = null;
  private plainFrame: Uint8Array | null = null;

  constructor(readonly json: string) {}

  frame(zstd: boolean): Uint8Array {
    if (zstd) return this.zstdFrame ??= encodeFrame(this.json, true);
    return this.plainFrame ??= encodeFrame(this.json, false);
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
    messages.push(decoder.decode(zstd ? zstdDecompressSync(payload) : payload));
    off += 4 + len;
  }
  return { messages, rest: buf.subarray(off) };
}
