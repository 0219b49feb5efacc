/**
 * The STUN subset Tailscale uses (RFC 5389): binding requests from tailscaled (SOFTWARE
 * "tailnode" and a FINGERPRINT) and binding success responses with one XOR-MAPPED-ADDRESS.
 * Pure functions; the UDP listener is in stun_server.ts.
 */
import { crc32 } from "node:zlib";
import { parseIP } from "../net/ip.ts";

const HEADER_LEN = 20;
const MAGIC_COOKIE = Uint8Array.of(0x21, 0x12, 0xa4, 0x42);
const ATTR_SOFTWARE = 0x8022;
const ATTR_FINGERPRINT = 0x8028;
const ATTR_MAPPED_ADDRESS = 0x0001;
const ATTR_XOR_MAPPED_ADDRESS = 0x0020;
const ATTR_XOR_MAPPED_ADDRESS_ALT = 0x8020;
const FINGERPRINT_XOR = 0x5354554e;
const FINGERPRINT_ATTR_LEN = 8;
const SOFTWARE = new TextEncoder().encode("tailnode");

export class StunError extends Error {
  override name = "StunError";
}

function fingerprint(b: Uint8Array): number {
  return (crc32(b) ^ FINGERPRINT_XOR) >>> 0;
}

/** Whether `b` has a STUN header: top two bits zero and the magic cookie. */
export function isStun(b: Uint8Array): boolean {
  return b.length >= HEADER_LEN && (b[0] & 0xc0) === 0 && b[4] === 0x21 && b[5] === 0x12 &&
    b[6] === 0xa4 && b[7] === 0x42;
}

function forEachAttr(b: Uint8Array, fn: (type: number, value: Uint8Array) => void): void {
  let off = 0;
  while (off < b.length) {
    if (b.length - off < 4) throw new StunError("malformed attributes");
    const type = (b[off] << 8) | b[off + 1];
    const len = (b[off + 2] << 8) | b[off + 3];
    const padded = (len + 3) & ~3;
    off += 4;
    if (padded > b.length - off) throw new StunError("malformed attributes");
    fn(type, b.subarray(off, off + len));
    off += padded;
  }
}

/**
 * The 12-byte transaction ID of a binding request from tailscaled. Throws StunError for
 * anything else: not STUN, another message type, no "tailnode" SOFTWARE, or a FINGERPRINT
 * that is missing, not last, or wrong.
 */
export function parseBindingRequest(b: Uint8Array): Uint8Array {
  if (!isStun(b)) throw new StunError("not a STUN packet");
  if (b[0] !== 0x00 || b[1] !== 0x01) throw new StunError("not a binding request");
  let softwareOK = false;
  let lastAttr = -1;
  let gotFingerprint = -1;
  forEachAttr(b.subarray(HEADER_LEN), (type, value) => {
    lastAttr = type;
    if (type === ATTR_SOFTWARE && bytesEqual(value, SOFTWARE)) softwareOK = true;
    if (type === ATTR_FINGERPRINT && value.length === 4) {
      gotFingerprint = new DataView(value.buffer, value.byteOffset, 4).getUint32(0);
    }
  });
  if (!softwareOK) throw new StunError("request is not from Tailscale (SOFTWARE)");
  if (lastAttr !== ATTR_FINGERPRINT) throw new StunError("request does not end in FINGERPRINT");
  if (gotFingerprint !== fingerprint(b.subarray(0, b.length - FINGERPRINT_ATTR_LEN))) {
    throw new StunError("wrong FINGERPRINT");
  }
  return new Uint8Array(b.subarray(8, HEADER_LEN));
}

/** The 4 or 16 address bytes of an IP literal (IPv4-mapped IPv6 becomes IPv4), or null. */
export function ipBytes(address: string): Uint8Array | null {
  const zone = address.indexOf("%");
  const ip = parseIP(zone >= 0 ? address.slice(0, zone) : address);
  if (!ip) return null;
  let value = ip.value;
  let len = ip.family === 4 ? 4 : 16;
  if (len === 16 && value >> 32n === 0xffffn) {
    len = 4;
    value &= 0xffffffffn;
  }
  const out = new Uint8Array(len);
  for (let i = len - 1; i >= 0; i--) {
    out[i] = Number(value & 0xffn);
    value >>= 8n;
  }
  return out;
}

/** A binding success response telling the client its address as we saw it. */
export function bindingResponse(txId: Uint8Array, addr: Uint8Array, port: number): Uint8Array {
  if (txId.length !== 12) throw new StunError("transaction ID must be 12 bytes");
  if (addr.length !== 4 && addr.length !== 16) throw new StunError("address must be 4 or 16 bytes");
  const attrLen = 4 + addr.length;
  const b = new Uint8Array(HEADER_LEN + 4 + attrLen);
  const v = new DataView(b.buffer);
  v.setUint16(0, 0x0101);
  v.setUint16(2, 4 + attrLen);
  b.set(MAGIC_COOKIE, 4);
  b.set(txId, 8);
  v.setUint16(20, ATTR_XOR_MAPPED_ADDRESS);
  v.setUint16(22, attrLen);
  b[24] = 0;
  b[25] = addr.length === 4 ? 0x01 : 0x02;
  v.setUint16(26, port ^ 0x2112);
  for (let i = 0; i < addr.length; i++) {
    b[28 + i] = addr[i] ^ (i < 4 ? MAGIC_COOKIE[i] : txId[i - 4]);
  }
  return b;
}

/** A binding request as tailscaled sends it (for tests and probes). */
export function bindingRequest(txId: Uint8Array): Uint8Array {
  const b = new Uint8Array(HEADER_LEN + 4 + SOFTWARE.length + FINGERPRINT_ATTR_LEN);
  const v = new DataView(b.buffer);
  v.setUint16(0, 0x0001);
  v.setUint16(2, b.length - HEADER_LEN);
  b.set(MAGIC_COOKIE, 4);
  b.set(txId, 8);
  v.setUint16(20, ATTR_SOFTWARE);
  v.setUint16(22, SOFTWARE.length);
  b.set(SOFTWARE, 24);
  const fpAt = 24 + SOFTWARE.length;
  v.setUint16(fpAt, ATTR_FINGERPRINT);
  v.setUint16(fpAt + 2, 4);
  v.setUint32(fpAt + 4, fingerprint(b.subarray(0, fpAt)));
  return b;
}

export interface BindingResponse {
  txId: Uint8Array;
  /** 4 or 16 bytes. */
  addr: Uint8Array;
  port: number;
}

/** Parses a binding success response (XOR-MAPPED-ADDRESS, or MAPPED-ADDRESS as fallback). */
export function parseBindingResponse(b: Uint8Array): BindingResponse {
  if (!isStun(b)) throw new StunError("not a STUN packet");
  if (b[0] !== 0x01 || b[1] !== 0x01) throw new StunError("not a binding success response");
  const txId = new Uint8Array(b.subarray(8, HEADER_LEN));
  const attrsLen = (b[2] << 8) | b[3];
  if (attrsLen > b.length - HEADER_LEN) throw new StunError("malformed attributes");
  let found: BindingResponse | undefined;
  let fallback: BindingResponse | undefined;
  forEachAttr(b.subarray(HEADER_LEN, HEADER_LEN + attrsLen), (type, value) => {
    if (value.length < 4) return;
    const family = value[1];
    const len = family === 1 ? 4 : family === 2 ? 16 : 0;
    if (len === 0 || value.length < 4 + len) throw new StunError("malformed address attribute");
    const port = (value[2] << 8) | value[3];
    const raw = new Uint8Array(value.subarray(4, 4 + len));
    if (type === ATTR_XOR_MAPPED_ADDRESS || type === ATTR_XOR_MAPPED_ADDRESS_ALT) {
      for (let i = 0; i < len; i++) raw[i] ^= i < 4 ? MAGIC_COOKIE[i] : txId[i - 4];
      found = { txId, addr: raw, port: port ^ 0x2112 };
    } else if (type === ATTR_MAPPED_ADDRESS) {
      fallback = { txId, addr: raw, port };
    }
  });
  const result = found ?? fallback;
  if (!result) throw new StunError("no mapped address in response");
  return result;
}

function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
