/**
 * The primitives of Noise_IK_25519_ChaChaPoly_BLAKE2s, all native (node:crypto): BLAKE2s-256,
 * Noise's HKDF over HMAC-BLAKE2s, X25519 and ChaCha20-Poly1305 (IETF, 16-byte tag).
 */
import {
  createCipheriv,
  createDecipheriv,
  createHash,
  diffieHellman,
  generateKeyPairSync,
  type KeyObject,
} from "node:crypto";
import { x25519PrivateKeyObject, x25519PublicKeyObject } from "../tailcfg/keys.ts";

export const HASH_LEN = 32;
export const KEY_LEN = 32;
export const TAG_LEN = 16;
export const NONCE_LEN = 12;

export class NoiseCryptoError extends Error {
  override name = "NoiseCryptoError";
}

export function blake2s(...parts: Uint8Array[]): Uint8Array {
  const h = createHash("blake2s256");
  for (const p of parts) h.update(p);
  return new Uint8Array(h.digest());
}

const BLAKE2S_BLOCK = 64;

/**
 * HMAC-BLAKE2s (RFC 2104) from two plain hashes: node:crypto's createHmac costs three times a
 * hash here, and a handshake makes fifteen of them.
 */
export function hmacBlake2s(key: Uint8Array, ...parts: Uint8Array[]): Uint8Array {
  const k = key.length > BLAKE2S_BLOCK ? blake2s(key) : key;
  const inner = new Uint8Array(BLAKE2S_BLOCK).fill(0x36);
  const outer = new Uint8Array(BLAKE2S_BLOCK).fill(0x5c);
  for (let i = 0; i < k.length; i++) {
    inner[i] ^= k[i];
    outer[i] ^= k[i];
  }
  return blake2s(outer, blake2s(inner, ...parts));
}

/**
 * Noise's HKDF(chainingKey, ikm) → two 32-byte outputs. Equal to RFC 5869 HKDF with
 * salt = chainingKey, empty info and 64 bytes of output, which is what Go's hkdf.New gives.
 */
export function hkdf2(chainingKey: Uint8Array, ikm: Uint8Array): [Uint8Array, Uint8Array] {
  const prk = hmacBlake2s(chainingKey, ikm);
  const out1 = hmacBlake2s(prk, Uint8Array.of(1));
  const out2 = hmacBlake2s(prk, out1, Uint8Array.of(2));
  return [out1, out2];
}

/** An X25519 key in node:crypto's form: imported once, used for several DH operations. */
export type X25519Key = KeyObject;

/** Imports a raw public key; NoiseCryptoError when it is not 32 bytes. */
export function x25519PublicKey(raw: Uint8Array): X25519Key {
  try {
    return x25519PublicKeyObject(raw);
  } catch {
    throw new NoiseCryptoError("X25519 public key is malformed");
  }
}

export function x25519PrivateKey(raw: Uint8Array): X25519Key {
  return x25519PrivateKeyObject(raw);
}

/** A fresh ephemeral key: the private half stays a KeyObject, only the public half is raw. */
export function x25519Ephemeral(): { privateKey: X25519Key; publicKey: Uint8Array } {
  const { privateKey, publicKey } = generateKeyPairSync("x25519");
  const jwk = publicKey.export({ format: "jwk" });
  return { privateKey, publicKey: new Uint8Array(Buffer.from(jwk.x as string, "base64url")) };
}

/**
 * X25519(privateKey, publicKey), raw keys or imported ones. Throws NoiseCryptoError when the
 * result would be all zeros (a low-order public key), as Go's curve25519.X25519 does.
 */
export function x25519(
  privateKey: Uint8Array | X25519Key,
  publicKey: Uint8Array | X25519Key,
): Uint8Array {
  let shared: Uint8Array;
  try {
    shared = new Uint8Array(diffieHellman({
      privateKey: privateKey instanceof Uint8Array
        ? x25519PrivateKeyObject(privateKey)
        : privateKey,
      publicKey: publicKey instanceof Uint8Array ? x25519PublicKeyObject(publicKey) : publicKey,
    }));
  } catch {
    throw new NoiseCryptoError("X25519 failed (low-order or malformed public key)");
  }
  if (shared.every((b) => b === 0)) throw new NoiseCryptoError("X25519 produced an all-zero key");
  return shared;
}

export function aeadSeal(
  key: Uint8Array,
  nonce: Uint8Array,
  plaintext: Uint8Array,
  ad?: Uint8Array,
): Uint8Array {
  const c = createCipheriv("chacha20-poly1305", key, nonce, { authTagLength: TAG_LEN });
  if (ad && ad.length > 0) c.setAAD(ad, { plaintextLength: plaintext.length });
  const head = c.update(plaintext);
  c.final();
  const out = new Uint8Array(plaintext.length + TAG_LEN);
  out.set(head, 0);
  out.set(c.getAuthTag(), plaintext.length);
  return out;
}

/** Opens ciphertext||tag; returns null when authentication fails. */
export function aeadOpen(
  key: Uint8Array,
  nonce: Uint8Array,
  sealed: Uint8Array,
  ad?: Uint8Array,
): Uint8Array | null {
  if (sealed.length < TAG_LEN) return null;
  const ctLen = sealed.length - TAG_LEN;
  const d = createDecipheriv("chacha20-poly1305", key, nonce, { authTagLength: TAG_LEN });
  d.setAuthTag(sealed.subarray(ctLen));
  if (ad && ad.length > 0) d.setAAD(ad, { plaintextLength: ctLen });
  const plain = d.update(sealed.subarray(0, ctLen));
  try {
    d.final();
  } catch {
    return null;
  }
  return new Uint8Array(plain.buffer, plain.byteOffset, plain.byteLength);
}
