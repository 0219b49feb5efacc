/**
 * NaCl `crypto_box` as DERP's handshake uses it: X25519 (native, node:crypto) then HSalsa20
 * to derive the key, then XSalsa20-Poly1305 with the Poly1305 tag in front of the ciphertext
 * (@noble/ciphers). Only the handshake frames are boxed, so speed matters little here; X25519
 * is native because every connecting node costs one.
 */
import { createPrivateKey, createPublicKey, diffieHellman, type KeyObject } from "node:crypto";
import { hsalsa, xsalsa20poly1305 } from "@noble/ciphers/salsa.js";

const PKCS8_X25519_PREFIX = Uint8Array.from([
  0x30,
  0x2e,
  0x02,
  0x01,
  0x00,
  0x30,
  0x05,
  0x06,
  0x03,
  0x2b,
  0x65,
  0x6e,
  0x04,
  0x22,
  0x04,
  0x20,
]);
const SPKI_X25519_PREFIX = Uint8Array.from([
  0x30,
  0x2a,
  0x30,
  0x05,
  0x06,
  0x03,
  0x2b,
  0x65,
  0x6e,
  0x03,
  0x21,
  0x00,
]);
/** "expand 32-byte k" as little-endian words. */
const SIGMA = Uint32Array.from([0x61707865, 0x3320646e, 0x79622d32, 0x6b206574]);

export const BOX_OVERHEAD = 16;

function join(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

/** A Curve25519 private key ready for repeated agreements. */
export class BoxPrivateKey {
  private readonly key: KeyObject;
  readonly publicKey: Uint8Array;

  constructor(raw: Uint8Array) {
    if (raw.length !== 32) throw new Error("private key must be 32 bytes");
    this.key = createPrivateKey({
      key: join(PKCS8_X25519_PREFIX, raw) as Buffer,
      format: "der",
      type: "pkcs8",
    });
    const spki = createPublicKey(this.key).export({ format: "der", type: "spki" });
    this.publicKey = new Uint8Array(spki.subarray(SPKI_X25519_PREFIX.length));
  }

  /**
   * The shared box key with `peerPublic` (crypto_box_beforenm). Throws for keys that give an
   * all-zero secret (low-order points).
   */
  sharedKey(peerPublic: Uint8Array): Uint8Array {
    if (peerPublic.length !== 32) throw new Error("public key must be 32 bytes");
    const pub = createPublicKey({
      key: join(SPKI_X25519_PREFIX, peerPublic) as Buffer,
      format: "der",
      type: "spki",
    });
    const secret = diffieHellman({ privateKey: this.key, publicKey: pub });
    return hsalsaKey(new Uint8Array(secret.buffer, secret.byteOffset, 32));
  }
}

function hsalsaKey(secret: Uint8Array): Uint8Array {
  const k = new Uint32Array(8);
  const view = new DataView(secret.buffer, secret.byteOffset, 32);
  for (let i = 0; i < 8; i++) k[i] = view.getUint32(i * 4, true);
  const out = new Uint32Array(8);
  hsalsa(SIGMA, k, new Uint32Array(4), out);
  const bytes = new Uint8Array(32);
  const outView = new DataView(bytes.buffer);
  for (let i = 0; i < 8; i++) outView.setUint32(i * 4, out[i], true);
  return bytes;
}

/** tag ‖ ciphertext of `message` under the shared key. */
export function sealBox(sharedKey: Uint8Array, nonce: Uint8Array, message: Uint8Array): Uint8Array {
  return xsalsa20poly1305(sharedKey, nonce).encrypt(message);
}

/** The message in a box, or null when it does not authenticate. */
export function openBox(
  sharedKey: Uint8Array,
  nonce: Uint8Array,
  box: Uint8Array,
): Uint8Array | null {
  if (box.length < BOX_OVERHEAD) return null;
  try {
    return xsalsa20poly1305(sharedKey, nonce).decrypt(box);
  } catch {
    return null;
  }
}
