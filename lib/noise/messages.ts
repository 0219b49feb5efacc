/**
 * The ts2021 wire frames (tailscale control/controlbase/messages.go):
 *   initiation  ver u16 BE · 0x01 · len u16 BE (96) · e (32) · enc s (48) · tag (16)   = 101 B
 *   response    0x02 · len u16 BE (48) · e (32) · tag (16)                           =  51 B
 *   error       0x03 · len u16 BE · ASCII message (unauthenticated)
 *   record      0x04 · len u16 BE · ciphertext incl. 16-byte tag
 */
import { TAG_LEN } from "./crypto.ts";

export const MSG_INITIATION = 0x01;
export const MSG_RESPONSE = 0x02;
export const MSG_ERROR = 0x03;
export const MSG_RECORD = 0x04;

/** Header of every frame but the initiation. */
export const HEADER_LEN = 3;
export const INITIATION_HEADER_LEN = 5;
export const INITIATION_LEN = 101;
export const RESPONSE_LEN = 51;

/** Largest frame on the wire, header included. */
export const MAX_FRAME_LEN = 4096;
export const MAX_CIPHERTEXT_LEN = MAX_FRAME_LEN - HEADER_LEN; // 4093
export const MAX_PLAINTEXT_LEN = MAX_CIPHERTEXT_LEN - TAG_LEN; // 4077

/** A handshake message that is not what the protocol says (size, type, length). */
export class NoiseFrameError extends Error {
  override name = "NoiseFrameError";
}

export interface Initiation {
  version: number;
  ephemeralPublic: Uint8Array; // 32
  encryptedStatic: Uint8Array; // 48
  tag: Uint8Array; // 16
}

export function encodeInitiation(m: Initiation): Uint8Array {
  const out = new Uint8Array(INITIATION_LEN);
  const v = new DataView(out.buffer);
  v.setUint16(0, m.version);
  out[2] = MSG_INITIATION;
  v.setUint16(3, INITIATION_LEN - INITIATION_HEADER_LEN);
  out.set(m.ephemeralPublic, 5);
  out.set(m.encryptedStatic, 37);
  out.set(m.tag, 85);
  return out;
}

/** Reads the cleartext protocol version of an initiation (first 2 bytes), or null if too short. */
export function initiationVersion(bytes: Uint8Array): number | null {
  return bytes.length >= 2 ? (bytes[0] << 8) | bytes[1] : null;
}

/** Splits a 101-byte initiation; the messages match what Go's server sends back as errors. */
export function decodeInitiation(bytes: Uint8Array): Initiation {
  if (bytes.length !== INITIATION_LEN) {
    throw new NoiseFrameError("wrong handshake initiation size");
  }
  if (bytes[2] !== MSG_INITIATION) throw new NoiseFrameError("unexpected handshake message type");
  if (((bytes[3] << 8) | bytes[4]) !== INITIATION_LEN - INITIATION_HEADER_LEN) {
    throw new NoiseFrameError("wrong handshake initiation length");
  }
  return {
    version: (bytes[0] << 8) | bytes[1],
    ephemeralPublic: bytes.slice(5, 37),
    encryptedStatic: bytes.slice(37, 85),
    tag: bytes.slice(85, 101),
  };
}

export interface Response {
  ephemeralPublic: Uint8Array; // 32
  tag: Uint8Array; // 16
}

export function encodeResponse(m: Response): Uint8Array {
  const out = new Uint8Array(RESPONSE_LEN);
  out[0] = MSG_RESPONSE;
  out[1] = 0;
  out[2] = RESPONSE_LEN - HEADER_LEN;
  out.set(m.ephemeralPublic, 3);
  out.set(m.tag, 35);
  return out;
}

export function decodeResponse(bytes: Uint8Array): Response {
  if (bytes.length !== RESPONSE_LEN) throw new NoiseFrameError("wrong handshake response size");
  if (bytes[0] !== MSG_RESPONSE) {
    throw new NoiseFrameError(`unexpected response message type ${bytes[0]}`);
  }
  if (((bytes[1] << 8) | bytes[2]) !== RESPONSE_LEN - HEADER_LEN) {
    throw new NoiseFrameError("wrong length received for handshake response");
  }
  return { ephemeralPublic: bytes.slice(3, 35), tag: bytes.slice(35, 51) };
}

/**
 * An error frame (type 0x03). The text is sent in the clear and unauthenticated, so keep it a
 * fixed hint: never echo what the client sent. Non-ASCII is replaced; longer than 64 KiB is cut.
 */
export function encodeErrorFrame(message: string): Uint8Array {
  const ascii = message.replace(/[^\x20-\x7e]/g, "?").slice(0, 0xffff);
  const out = new Uint8Array(HEADER_LEN + ascii.length);
  out[0] = MSG_ERROR;
  out[1] = ascii.length >> 8;
  out[2] = ascii.length & 0xff;
  for (let i = 0; i < ascii.length; i++) out[HEADER_LEN + i] = ascii.charCodeAt(i);
  return out;
}

/** Type and declared payload length of a 3-byte frame header. */
export function readHeader(bytes: Uint8Array, offset = 0): { type: number; length: number } {
  return { type: bytes[offset], length: (bytes[offset + 1] << 8) | bytes[offset + 2] };
}
