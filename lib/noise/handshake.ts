/**
 * The Noise IK handshake of the ts2021 control protocol, both sides, as pure functions on bytes:
 *
 *   <- s
 *   ...
 *   -> e, es, s, ss        (initiation: client ephemeral, encrypted client machine key)
 *   <- e, ee, se           (response: server ephemeral)
 *
 * The prologue is "Tailscale Control Protocol v<version>", version being the u16 in the
 * initiation header (the client's capability version). Split gives k1 for client→server records
 * and k2 for server→client records.
 */
import {
  aeadOpen,
  aeadSeal,
  blake2s,
  hkdf2,
  KEY_LEN,
  NONCE_LEN,
  x25519,
  x25519Ephemeral,
  type X25519Key,
  x25519PrivateKey,
  x25519PublicKey,
} from "./crypto.ts";
import { decodeInitiation, decodeResponse, encodeInitiation, encodeResponse } from "./messages.ts";
import { generateKeyPair, type KeyPair, publicKeyOf } from "../tailcfg/keys.ts";

export const PROTOCOL_NAME = "Noise_IK_25519_ChaChaPoly_BLAKE2s";
export const PROLOGUE_PREFIX = "Tailscale Control Protocol v";

/** The handshake failed to authenticate or compute (bad keys, tampered bytes). */
export class NoiseHandshakeError extends Error {
  override name = "NoiseHandshakeError";
}

export interface HandshakeResult {
  /** Protocol (capability) version from the initiation header. */
  version: number;
  /** The other side's static public key (the client's machine key, on the server). */
  peerPublicKey: Uint8Array;
  /** Final handshake hash h; binds data to this connection. */
  handshakeHash: Uint8Array;
  /** Key for records this side sends. */
  sendKey: Uint8Array;
  /** Key for records this side receives. */
  receiveKey: Uint8Array;
}

const encoder = new TextEncoder();
const ZERO_NONCE = new Uint8Array(NONCE_LEN);
const EMPTY = new Uint8Array(0);

export function prologue(version: number): Uint8Array {
  return encoder.encode(PROLOGUE_PREFIX + String(version));
}

/** h and ck of the Noise symmetric state. Each handshake key is used once, with nonce 0. */
class SymmetricState {
  h: Uint8Array;
  ck: Uint8Array;

  constructor() {
    // The name is 33 bytes (> HASHLEN), so h = HASH(name).
    this.h = blake2s(encoder.encode(PROTOCOL_NAME));
    this.ck = this.h;
  }

  mixHash(data: Uint8Array): void {
    this.h = blake2s(this.h, data);
  }

  mixDH(privateKey: Uint8Array | X25519Key, publicKey: Uint8Array | X25519Key): Uint8Array {
    const [ck, k] = hkdf2(this.ck, x25519(privateKey, publicKey));
    this.ck = ck;
    return k;
  }

  encryptAndHash(key: Uint8Array, plaintext: Uint8Array): Uint8Array {
    const sealed = aeadSeal(key, ZERO_NONCE, plaintext, this.h);
    this.mixHash(sealed);
    return sealed;
  }

  decryptAndHash(key: Uint8Array, sealed: Uint8Array, what: string): Uint8Array {
    const plain = aeadOpen(key, ZERO_NONCE, sealed, this.h);
    if (plain === null) throw new NoiseHandshakeError(`decrypting ${what} failed`);
    this.mixHash(sealed);
    return plain;
  }

  split(): [Uint8Array, Uint8Array] {
    return hkdf2(this.ck, EMPTY);
  }
}

function checkVersion(version: number): void {
  if (!Number.isInteger(version) || version < 0 || version > 0xffff) {
    throw new RangeError(`protocol version must be a u16, got ${version}`);
  }
}

function dh(
  s: SymmetricState,
  priv: Uint8Array | X25519Key,
  pub: Uint8Array | X25519Key,
  step: string,
): Uint8Array {
  try {
    return s.mixDH(priv, pub);
  } catch (e) {
    throw new NoiseHandshakeError(`computing ${step}: ${(e as Error).message}`);
  }
}

export interface ClientHandshakeOptions {
  machinePrivateKey: Uint8Array;
  serverPublicKey: Uint8Array;
  /** The client's capability version; goes in the initiation header and the prologue. */
  version: number;
  /** Fixed ephemeral key, for test vectors only. */
  ephemeral?: KeyPair;
}

export interface ClientHandshake {
  /** The 101-byte initiation message (sent base64 in X-Tailscale-Handshake). */
  initiation: Uint8Array;
  /** Processes the server's 51-byte response; throws NoiseHandshakeError or NoiseFrameError. */
  finish(response: Uint8Array): HandshakeResult;
}

/** Client side: builds the initiation, and returns a continuation for the response. */
export function startClientHandshake(opts: ClientHandshakeOptions): ClientHandshake {
  checkVersion(opts.version);
  const s = new SymmetricState();
  s.mixHash(prologue(opts.version));
  s.mixHash(opts.serverPublicKey);

  const e = opts.ephemeral ?? generateKeyPair();
  s.mixHash(e.publicKey);
  let k = dh(s, e.privateKey, opts.serverPublicKey, "es");
  const encryptedStatic = s.encryptAndHash(k, publicKeyOf(opts.machinePrivateKey));
  k = dh(s, opts.machinePrivateKey, opts.serverPublicKey, "ss");
  const tag = s.encryptAndHash(k, EMPTY);
  const initiation = encodeInitiation({
    version: opts.version,
    ephemeralPublic: e.publicKey,
    encryptedStatic,
    tag,
  });

  let used = false;
  return {
    initiation,
    finish(responseBytes: Uint8Array): HandshakeResult {
      if (used) throw new Error("client handshake already finished");
      used = true;
      const resp = decodeResponse(responseBytes);
      s.mixHash(resp.ephemeralPublic);
      dh(s, e.privateKey, resp.ephemeralPublic, "ee");
      const k = dh(s, opts.machinePrivateKey, resp.ephemeralPublic, "se");
      s.decryptAndHash(k, resp.tag, "handshake response tag");
      const [k1, k2] = s.split();
      return {
        version: opts.version,
        peerPublicKey: opts.serverPublicKey,
        handshakeHash: s.h,
        sendKey: k1,
        receiveKey: k2,
      };
    },
  };
}

export interface ServerHandshakeOptions {
  serverPrivateKey: Uint8Array;
  /** Saves a scalar multiplication when given; must match serverPrivateKey. */
  serverPublicKey?: Uint8Array;
  /** The client's 101-byte initiation. */
  initiation: Uint8Array;
  /** Fixed ephemeral key, for test vectors only. */
  ephemeral?: KeyPair;
  /** serverPrivateKey imported once (ts2021UpgradeHandler keeps it), saving an import per DH. */
  serverKey?: X25519Key;
}

/** Imports a key the peer sent, once for its two DH operations. */
function peerKey(raw: Uint8Array, what: string): X25519Key {
  try {
    return x25519PublicKey(raw);
  } catch (e) {
    throw new NoiseHandshakeError(`${what}: ${(e as Error).message}`);
  }
}

/**
 * Server side: checks and processes an initiation, and builds the 51-byte response.
 * Throws NoiseFrameError for a malformed initiation (its message is safe to send back in an
 * error frame) and NoiseHandshakeError when authentication fails.
 */
export function respondToHandshake(
  opts: ServerHandshakeOptions,
): HandshakeResult & { response: Uint8Array } {
  const init = decodeInitiation(opts.initiation);
  const serverPublic = opts.serverPublicKey ?? publicKeyOf(opts.serverPrivateKey);
  if (serverPublic.length !== KEY_LEN) throw new RangeError("server public key must be 32 bytes");

  const s = new SymmetricState();
  s.mixHash(prologue(init.version));
  s.mixHash(serverPublic);

  const serverKey = opts.serverKey ?? x25519PrivateKey(opts.serverPrivateKey);
  s.mixHash(init.ephemeralPublic);
  const clientEphemeral = peerKey(init.ephemeralPublic, "client ephemeral key");
  let k = dh(s, serverKey, clientEphemeral, "es");
  const machineKey = s.decryptAndHash(k, init.encryptedStatic, "machine key");
  const clientStatic = peerKey(machineKey, "client machine key");
  k = dh(s, serverKey, clientStatic, "ss");
  s.decryptAndHash(k, init.tag, "initiation tag");

  const e = opts.ephemeral
    ? {
      privateKey: x25519PrivateKey(opts.ephemeral.privateKey),
      publicKey: opts.ephemeral.publicKey,
    }
    : x25519Ephemeral();
  s.mixHash(e.publicKey);
  dh(s, e.privateKey, clientEphemeral, "ee");
  k = dh(s, e.privateKey, clientStatic, "se");
  const tag = s.encryptAndHash(k, EMPTY);
  const [k1, k2] = s.split();

  return {
    response: encodeResponse({ ephemeralPublic: e.publicKey, tag }),
    version: init.version,
    peerPublicKey: machineKey,
    handshakeHash: s.h,
    sendKey: k2,
    receiveKey: k1,
  };
}
