/**
 * Transport records: one ChaCha20-Poly1305 key per direction, a per-direction counter, and the
 * nonce Tailscale uses: 4 zero bytes || counter as u64 BIG-endian (the Noise spec says
 * little-endian; Tailscale differs, and it only shows from the second record on).
 * Empty associated data; no rekeying.
 */
import { createCipheriv, createDecipheriv } from "node:crypto";
import { NONCE_LEN, TAG_LEN } from "./crypto.ts";
import { HEADER_LEN, MAX_PLAINTEXT_LEN, MSG_RECORD } from "./messages.ts";
import type { ChaChaSealEngine, OutputMemory } from "./chacha_wasm.ts";

/** A record failed to decrypt, or the counter ran out: the connection cannot go on. */
export class NoiseRecordError extends Error {
  override name = "NoiseRecordError";
}

/** JS numbers are exact to 2^53; no connection comes near that many records. */
const MAX_COUNTER = Number.MAX_SAFE_INTEGER;

class Counter {
  #value = 0;
  /** Made on first use: a sealer on the wasm engine only counts (~220 bytes a connection). */
  #nonce: Buffer | null = null;

  /** The nonce for the current counter value; then counts up. */
  next(): Buffer {
    if (this.#value >= MAX_COUNTER) {
      throw new NoiseRecordError("cipher exhausted, no more nonces available for this key");
    }
    const v = this.#value++;
    const nonce = this.#nonce ??= Buffer.alloc(NONCE_LEN);
    nonce.writeUInt32BE(Math.floor(v / 0x1_0000_0000), 4);
    nonce.writeUInt32BE(v >>> 0, 8);
    return nonce;
  }

  get value(): number {
    return this.#value;
  }

  /** Takes `n` values at once; returns the first. */
  take(n: number): number {
    if (this.#value + n > MAX_COUNTER) {
      throw new NoiseRecordError("cipher exhausted, no more nonces available for this key");
    }
    const first = this.#value;
    this.#value += n;
    return first;
  }
}

/**
 * Encrypts outgoing plaintext into record frames (type 0x04), splitting at 4077 bytes. With an
 * engine (chacha_wasm.ts, what the server uses) the sealing runs in WebAssembly; without one,
 * node:crypto does it.
 */
export class RecordSealer {
  readonly #key: Buffer;
  readonly #counter = new Counter();

  constructor(key: Uint8Array, private readonly engine?: ChaChaSealEngine) {
    this.#key = Buffer.from(key);
  }

  /** Records sent so far. */
  get count(): number {
    return this.#counter.value;
  }

  /**
   * The socket took `frames` (from seal/sealPieces) whole before its write returned: the engine
   * may reuse their memory. They must not be read after this.
   */
  reuse(frames: Uint8Array): void {
    this.engine?.reuse(frames);
  }

  /**
   * Frames for `plaintext`: ceil(len / 4077) records, one for an empty input (a legal empty
   * record). Returned as one buffer so it goes out in one socket write.
   */
  seal(plaintext: Uint8Array): Buffer {
    // Without `lend` the output is always a Buffer of its own.
    return this.sealPieces([plaintext], plaintext.length) as Buffer;
  }

  /**
   * As seal, for `pieces` taken in order as one plaintext of `total` bytes (not copied first).
   * With `lend`, a small output may be the engine's reused memory: the caller must hand it back
   * with `reuse` as soon as the socket took it whole, and never read it after that. With
   * `memory` (the engine only), the output goes there when it has room.
   */
  sealPieces(
    pieces: readonly Uint8Array[],
    total: number,
    lend = false,
    memory?: OutputMemory,
  ): Uint8Array {
    if (this.engine) {
      const records = Math.max(1, Math.ceil(total / MAX_PLAINTEXT_LEN));
      return this.engine.sealRecords(
        this.#key,
        this.#counter.take(records),
        pieces,
        total,
        lend,
        memory,
      );
    }
    const plaintext = pieces.length === 1 ? pieces[0] : Buffer.concat(pieces, total);
    const records = Math.max(1, Math.ceil(plaintext.length / MAX_PLAINTEXT_LEN));
    const out = Buffer.allocUnsafe(plaintext.length + records * (HEADER_LEN + TAG_LEN));
    let src = 0;
    let dst = 0;
    for (let i = 0; i < records; i++) {
      const piece = plaintext.subarray(src, src + MAX_PLAINTEXT_LEN);
      src += piece.length;
      const cipher = createCipheriv("chacha20-poly1305", this.#key, this.#counter.next(), {
        authTagLength: TAG_LEN,
      });
      out[dst] = MSG_RECORD;
      out.writeUInt16BE(piece.length + TAG_LEN, dst + 1);
      dst += HEADER_LEN;
      const ct = cipher.update(piece);
      cipher.final();
      out.set(ct, dst);
      dst += ct.length;
      out.set(cipher.getAuthTag(), dst);
      dst += TAG_LEN;
    }
    return out;
  }
}

/**
 * Decrypts the ciphertext of incoming records, in order: in WebAssembly with an engine (the
 * server's; node:crypto's decipher costs ~5 µs of JavaScript a record), else with node:crypto.
 */
export class RecordOpener {
  readonly #key: Buffer;
  readonly #counter = new Counter();
  #failed = false;

  constructor(key: Uint8Array, private readonly engine?: ChaChaSealEngine) {
    this.#key = Buffer.from(key);
  }

  get count(): number {
    return this.#counter.value;
  }

  /** Opens one record's ciphertext (tag included). Throws NoiseRecordError; fatal after that. */
  open(sealed: Uint8Array): Buffer {
    if (this.#failed) throw new NoiseRecordError("connection is desynchronized after an error");
    if (sealed.length < TAG_LEN) {
      this.#failed = true;
      throw new NoiseRecordError(`record of ${sealed.length} bytes is shorter than its tag`);
    }
    if (this.engine) {
      const plain = this.engine.openRecord(this.#key, this.#counter.take(1), sealed);
      if (plain === null) {
        this.#failed = true;
        throw new NoiseRecordError("record failed to decrypt (tampered, reordered or wrong key)");
      }
      return plain;
    }
    const ctLen = sealed.length - TAG_LEN;
    const decipher = createDecipheriv("chacha20-poly1305", this.#key, this.#counter.next(), {
      authTagLength: TAG_LEN,
    });
    decipher.setAuthTag(sealed.subarray(ctLen));
    const plain = decipher.update(sealed.subarray(0, ctLen));
    try {
      decipher.final();
    } catch {
      this.#failed = true;
      throw new NoiseRecordError("record failed to decrypt (tampered, reordered or wrong key)");
    }
    return plain;
  }
}
