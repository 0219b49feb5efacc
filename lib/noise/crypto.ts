/**
 * The primitives of Noise_IK_25519_ChaChaPoly_BLAKE2s, all native (node:crypto): BLAKE2s-256,
 * Noise's HKDF over HMAC-BLAKE2s, X25519 and ChaCha20-Poly1305 (IETF, 16-byte tag).
 */
import {
  createCipheriv,
  createDecipheriv,
  createHash,
  createHmac,
  diffieHellman,
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

function hmacBlake2s(key: Uint8Array, ...parts: Uint8Array[]): Uint8Array {
  const h = createHmac("blake2s256", key);
  for (const p of parts) h.update(p);
  return new Uint8Array(h.digest());
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

/**
 * X25519(privateKey, publicKey). Throws NoiseCryptoError when the result would be all zeros
 * (a low-order public key), as Go's curve25519.X25519 does.
 */
export function x25519(privateKey: Uint8Array, publicKey: Uint8Array): Uint8Array {
  let shared: Uint8Array;
  try {
    shared = new Uint8Array(diffieHellman({
      privateKey: x25519PrivateKeyObject(privateKey),
      publicKey: x25519PublicKeyObject(publicKey),
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
