/**
 * Text forms of Tailscale's 32-byte keys (`mkey:`, `nodekey:`, `discokey:`, `nlpub:`, `chalpub:`,
 * `privkey:`) and X25519 key pairs. A text key is its prefix plus 64 hex digits; Go's parser
 * accepts either hex case, and every Go formatter writes lowercase, so we do the same.
 */
import {
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  type KeyObject,
  timingSafeEqual,
} from "node:crypto";
import { Buffer } from "node:buffer";

/** The key kinds, named by their text prefix (without the colon). */
export type KeyKind = "mkey" | "nodekey" | "discokey" | "nlpub" | "chalpub" | "privkey";

/**
 * A key in its text form (`mkey:…`, `nodekey:…`): the compiler then refuses a node key where a
 * machine key is asked for. Checked text comes from formatKey or a validator (usableKey).
 */
export type KeyText<K extends KeyKind> = `${K}:${string}`;
export type MachineKey = KeyText<"mkey">;
export type NodeKey = KeyText<"nodekey">;

/** True when `text` has the `kind:` prefix (the rest is checked where the key is parsed). */
export function hasKeyKind<K extends KeyKind>(text: string, kind: K): text is KeyText<K> {
  return text.startsWith(`${kind}:`);
}

export const KEY_LENGTH = 32;

const KINDS: ReadonlySet<string> = new Set<KeyKind>([
  "mkey",
  "nodekey",
  "discokey",
  "nlpub",
  "chalpub",
  "privkey",
]);

export class KeyParseError extends Error {
  override name = "KeyParseError";
}

export interface KeyPair {
  /** 32 raw bytes (X25519 scalar, unclamped as generated; X25519 clamps when used). */
  privateKey: Uint8Array;
  /** 32 raw bytes (Curve25519 u-coordinate). */
  publicKey: Uint8Array;
}

/**
 * Lowercase hex of `bytes`, as one flat string. Appending digit by digit made a tree of ~100
 * string pieces per key (1.5 KB where 80 bytes do), and a key kept as it was made (a
 * connection's machine key for its logs) stayed a tree for the connection's life.
 */
export function toHex(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("hex");
}

/** What text would look like for logs: never echo a whole (possibly secret) value. */
function describe(text: string): string {
  return text.length > 16 ? JSON.stringify(text.slice(0, 16) + "…") : JSON.stringify(text);
}

/**
 * Parses `<kind>:<64 hex>` into 32 raw bytes. Throws KeyParseError naming what is wrong (prefix,
 * length or a non-hex digit). The error never repeats a private key's digits.
 */
export function parseKey(text: string, kind: KeyKind): Uint8Array {
  if (typeof text !== "string") throw new KeyParseError(`${kind} key: expected a string`);
  const prefix = kind + ":";
  const shown = kind === "privkey" ? "private key text" : describe(text);
  if (!text.startsWith(prefix)) {
    throw new KeyParseError(`${kind} key: ${shown} does not start with "${prefix}"`);
  }
  const hex = text.slice(prefix.length);
  if (hex.length !== KEY_LENGTH * 2) {
    throw new KeyParseError(
      `${kind} key: expected ${KEY_LENGTH * 2} hex digits after "${prefix}", got ${hex.length}`,
    );
  }
  const out = new Uint8Array(KEY_LENGTH);
  for (let i = 0; i < KEY_LENGTH; i++) {
    const hi = hexValue(hex.charCodeAt(2 * i));
    const lo = hexValue(hex.charCodeAt(2 * i + 1));
    if (hi < 0 || lo < 0) {
      throw new KeyParseError(`${kind} key: ${shown} has a non-hex digit`);
    }
    out[i] = (hi << 4) | lo;
  }
  return out;
}

function hexValue(c: number): number {
  if (c >= 48 && c <= 57) return c - 48; // 0-9
  if (c >= 97 && c <= 102) return c - 87; // a-f
  if (c >= 65 && c <= 70) return c - 55; // A-F
  return -1;
}

/** Formats 32 raw bytes as `<kind>:<64 lowercase hex>`. */
export function formatKey<K extends KeyKind>(bytes: Uint8Array, kind: K): KeyText<K> {
  if (!KINDS.has(kind)) throw new KeyParseError(`unknown key kind ${JSON.stringify(kind)}`);
  if (!(bytes instanceof Uint8Array) || bytes.length !== KEY_LENGTH) {
    throw new KeyParseError(`${kind} key: expected ${KEY_LENGTH} bytes`);
  }
  return `${kind}:${toHex(bytes)}` as KeyText<K>;
}

/** `<kind>:` followed by 64 zeros: how Go writes an absent key. */
export function zeroKeyText(kind: KeyKind): string {
  return `${kind}:${"0".repeat(KEY_LENGTH * 2)}`;
}

/**
 * True for the all-zero key ("none" on the wire). Accepts raw bytes or a text key of any
 * kind; a malformed text key is not zero (callers parse first when they need to reject it).
 */
export function isZeroKey(key: Uint8Array | string): boolean {
  if (typeof key === "string") {
    const colon = key.indexOf(":");
    return colon > 0 && /^0{64}$/.test(key.slice(colon + 1));
  }
  return key.length > 0 && key.every((b) => b === 0);
}

/** Constant-time equality of two raw keys (false when the lengths differ). */
export function keysEqual(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}

/**
 * A short form for logs, like Go's ShortString: `[` + first 5 base64 chars + `]`.
 * Only for public keys.
 */
export function shortKey(publicKey: Uint8Array): string {
  return `[${Buffer.from(publicKey).toString("base64").slice(0, 5)}]`;
}

// DER wrappers that let node:crypto import raw X25519 keys (RFC 8410).
const PKCS8_X25519_PREFIX = Buffer.from("302e020100300506032b656e04220420", "hex");
const SPKI_X25519_PREFIX = Buffer.from("302a300506032b656e032100", "hex");

/** node:crypto KeyObject for a raw 32-byte X25519 private key. */
export function x25519PrivateKeyObject(privateKey: Uint8Array): KeyObject {
  if (privateKey.length !== KEY_LENGTH) {
    throw new KeyParseError("X25519 private key: need 32 bytes");
  }
  return createPrivateKey({
    key: Buffer.concat([PKCS8_X25519_PREFIX, privateKey]),
    format: "der",
    type: "pkcs8",
  });
}

/** node:crypto KeyObject for a raw 32-byte X25519 public key. */
export function x25519PublicKeyObject(publicKey: Uint8Array): KeyObject {
  if (publicKey.length !== KEY_LENGTH) throw new KeyParseError("X25519 public key: need 32 bytes");
  return createPublicKey({
    key: Buffer.concat([SPKI_X25519_PREFIX, publicKey]),
    format: "der",
    type: "spki",
  });
}

function rawFromJwk(k: KeyObject, field: "d" | "x"): Uint8Array {
  const jwk = k.export({ format: "jwk" });
  return new Uint8Array(Buffer.from(jwk[field] as string, "base64url"));
}

/** A fresh X25519 key pair (native node:crypto). */
export function generateKeyPair(): KeyPair {
  const { privateKey, publicKey } = generateKeyPairSync("x25519");
  return { privateKey: rawFromJwk(privateKey, "d"), publicKey: rawFromJwk(publicKey, "x") };
}

/** The X25519 public key of a raw private key. */
export function publicKeyOf(privateKey: Uint8Array): Uint8Array {
  return rawFromJwk(createPublicKey(x25519PrivateKeyObject(privateKey)), "x");
}

/** `privkey:<64 hex>`, the form the server's key files use. Never log the result. */
export function formatPrivateKey(privateKey: Uint8Array): string {
  return formatKey(privateKey, "privkey");
}

export function parsePrivateKey(text: string): Uint8Array {
  return parseKey(text.trim(), "privkey");
}
