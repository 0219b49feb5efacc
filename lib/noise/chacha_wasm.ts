/**
 * ChaCha20-Poly1305 sealing (RFC 8439, IETF nonce, empty associated data) in WebAssembly that is
 * assembled here (wasm_asm.ts) when an engine is created: ChaCha20 four blocks at a time in SIMD
 * lanes, Poly1305 with 26-bit limbs in 64-bit arithmetic.
 *
 * Why not node:crypto: each createCipheriv is a Transform stream plus several buffers, ~4 µs of
 * JavaScript around ~1 µs of cipher, and a Noise record is at most 4,077 bytes, so a 1 MB full map
 * is 250 of them and every change goes out once per receiving node. Sealing was a third of the
 * server's CPU in a 5,000-node restart storm. Opening what clients send works the same way
 * (decipher objects were ~5 % of a 10,000-node join storm); clients in tests use node:crypto.
 *
 * Memory: the key at 0, one four-block keystream at 64, a padding block at 320, an opened
 * record's computed tag at 336, then the plaintext and the records built from it (or the record
 * being opened, in place). An engine is a workspace: calls are synchronous and
 * leave nothing behind that the next call reads, so one engine serves every connection.
 */
import {
  block,
  br,
  brIf,
  call,
  cat,
  type Code,
  get,
  I32,
  i32,
  I64,
  i64,
  ifThen,
  loop,
  set,
  tee,
  V128,
  v128,
  wasmModule,
} from "./wasm_asm.ts";
import { HEADER_LEN, MAX_PLAINTEXT_LEN, MSG_RECORD } from "./messages.ts";
import { TAG_LEN } from "./crypto.ts";

const KEY = 0;
const KS = 64;
const PAD = 320;
const TAG_OUT = 336;
const DATA = 1024;
const PAGE = 65536;
/** Outputs from this size on are made here and may be reused (smaller ones come from a pool). */
export const REUSE_MIN = 16 << 10;

/** Memory a caller provides for sealed output (lib/net/write_batch.ts); null: it has no room. */
export interface OutputMemory {
  take(len: number): Uint8Array | null;
}

/** block4(counter, n1, n2): keystream blocks counter..counter+3 at KS (nonce word 0 is zero). */
function block4Function() {
  // params 0-2; x0..x15 v128 at 3..18; tmp v128 19; round i32 20; transpose temps 21..24.
  const [ctr, n1, n2] = [0, 1, 2];
  const x = (i: number) => 3 + i;
  const tmp = 19;
  const round = 20;
  const t = (i: number) => 21 + i;
  const SIGMA = [0x61707865, 0x3320646e, 0x79622d32, 0x6b206574];
  const initial = (i: number): Code => {
    if (i < 4) return v128.splat(i32.const(SIGMA[i]));
    if (i < 12) return v128.splat(i32.load(i32.const(KEY), 4 * (i - 4)));
    if (i === 12) return v128.add(v128.splat(get(ctr)), v128.const([0, 1, 2, 3]));
    if (i === 13) return v128.const([0, 0, 0, 0]);
    return v128.splat(get(i === 14 ? n1 : n2));
  };
  const ROT16 = [2, 3, 0, 1, 6, 7, 4, 5, 10, 11, 8, 9, 14, 15, 12, 13];
  const ROT8 = [3, 0, 1, 2, 7, 4, 5, 6, 11, 8, 9, 10, 15, 12, 13, 14];
  const rotl = (e: Code, n: number): Code => {
    if (n === 16 || n === 8) return v128.shuffle(tee(tmp, e), get(tmp), n === 16 ? ROT16 : ROT8);
    return v128.or(v128.shl(tee(tmp, e), i32.const(n)), v128.shrU(get(tmp), i32.const(32 - n)));
  };
  const qr = (a: number, b: number, c: number, d: number): Code =>
    cat(
      set(x(a), v128.add(get(x(a)), get(x(b)))),
      set(x(d), rotl(v128.xor(get(x(d)), get(x(a))), 16)),
      set(x(c), v128.add(get(x(c)), get(x(d)))),
      set(x(b), rotl(v128.xor(get(x(b)), get(x(c))), 12)),
      set(x(a), v128.add(get(x(a)), get(x(b)))),
      set(x(d), rotl(v128.xor(get(x(d)), get(x(a))), 8)),
      set(x(c), v128.add(get(x(c)), get(x(d)))),
      set(x(b), rotl(v128.xor(get(x(b)), get(x(c))), 7)),
    );
  // Lane j of x(i) is word i of block j; a 4×4 transpose of words 4g..4g+3 gives, per block,
  // 16 consecutive bytes of its keystream.
  const lo = [0, 1, 2, 3, 16, 17, 18, 19, 4, 5, 6, 7, 20, 21, 22, 23];
  const hi = [8, 9, 10, 11, 24, 25, 26, 27, 12, 13, 14, 15, 28, 29, 30, 31];
  const first = [0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23];
  const second = [8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31];
  const stores: Code[] = [];
  for (let g = 0; g < 4; g++) {
    const [a, b, c, d] = [x(4 * g), x(4 * g + 1), x(4 * g + 2), x(4 * g + 3)];
    stores.push(
      set(t(0), v128.shuffle(get(a), get(b), lo)),
      set(t(1), v128.shuffle(get(c), get(d), lo)),
      set(t(2), v128.shuffle(get(a), get(b), hi)),
      set(t(3), v128.shuffle(get(c), get(d), hi)),
      v128.store(i32.const(KS), v128.shuffle(get(t(0)), get(t(1)), first), 16 * g),
      v128.store(i32.const(KS), v128.shuffle(get(t(0)), get(t(1)), second), 64 + 16 * g),
      v128.store(i32.const(KS), v128.shuffle(get(t(2)), get(t(3)), first), 128 + 16 * g),
      v128.store(i32.const(KS), v128.shuffle(get(t(2)), get(t(3)), second), 192 + 16 * g),
    );
  }
  const init: Code[] = [];
  const addBack: Code[] = [];
  for (let i = 0; i < 16; i++) {
    init.push(set(x(i), initial(i)));
    addBack.push(set(x(i), v128.add(get(x(i)), initial(i))));
  }
  return {
    params: [I32, I32, I32],
    locals: [...Array(17).fill(V128), I32, ...Array(4).fill(V128)],
    body: cat(
      ...init,
      set(round, i32.const(10)),
      loop(
        qr(0, 4, 8, 12),
        qr(1, 5, 9, 13),
        qr(2, 6, 10, 14),
        qr(3, 7, 11, 15),
        qr(0, 5, 10, 15),
        qr(1, 6, 11, 12),
        qr(2, 7, 8, 13),
        qr(3, 4, 9, 14),
        brIf(0, tee(round, i32.sub(get(round), i32.const(1)))),
      ),
      ...addBack,
      ...stores,
    ),
  };
}

/**
 * seal(in, len, out, n1, n2): out = ChaCha20(in) from block 1, then the 16-byte Poly1305 tag
 * at out + len (the one-time key from block 0). open(in, len, out, n1, n2): the tag of the
 * ciphertext at `in` to TAG_OUT, then out = ChaCha20(in). `in` and `out` may be the same.
 */
function sealFunction(block4: number, mode: "seal" | "open") {
  const [inp, len, out, n1, n2] = [0, 1, 2, 3, 4];
  // i32 locals 5..12, i64 locals 13..
  const [pos, ks, ctr, n, i, p, end, ta] = [5, 6, 7, 8, 9, 10, 11, 12];
  const tb = 13;
  // i64 locals from 14 on: five limbs each of h, r, d (products) and g (h - p), r·5, the pad.
  let next = 14;
  const i64s = (n: number) => Array.from({ length: n }, () => next++);
  const [h, r, d, gl, s, pad] = [i64s(5), i64s(5), i64s(5), i64s(5), i64s(5), i64s(4)];
  const [c, sel] = i64s(2);
  const I64_LOCALS = next - 14;
  const M = i64.const(0x3ffffff);
  const g = get;
  const mul = i64.mul;
  const add = i64.add;
  const sum = (...terms: Code[]): Code => terms.reduce((x, y) => add(x, y));
  const shr = (e: Code, n: number) => i64.shrU(e, i64.const(n));
  /** Limb k of a 16-byte little-endian number: 26 bits from byte LIMB[k][0], shifted right. */
  const LIMB = [[0, 0], [3, 2], [6, 4], [9, 6], [12, 8]];
  const R_CLAMP = [0x3ffffff, 0x3ffff03, 0x3ffc0ff, 0x3f03fff, 0x00fffff];
  const limb = (ptr: Code, k: number) => shr(i64.load32(ptr, LIMB[k][0]), LIMB[k][1]);
  // c = x >> 26, x &= M, y += c·factor.
  const carry = (x: number, y: number, factor = 1) =>
    cat(
      set(c, shr(g(x), 26)),
      set(x, i64.and(g(x), M)),
      set(y, add(g(y), factor === 1 ? g(c) : mul(g(c), i64.const(factor)))),
    );

  // One 16-byte block at `ptr` (the 2^128 bit set: every block of the AEAD's MAC input is full).
  // h = (h + m)·r mod 2^130 - 5: d_k = Σ h_i·r_(k-i), with 5·r where the index wraps.
  const polyBlock = (ptr: Code): Code =>
    cat(
      ...h.map((hk, k) =>
        set(
          hk,
          add(g(hk), k < 4 ? i64.and(limb(ptr, k), M) : i64.or(limb(ptr, k), i64.const(1 << 24))),
        )
      ),
      ...d.map((dk, k) =>
        set(dk, sum(...h.map((hi, i) => mul(g(hi), g(i <= k ? r[k - i] : s[5 + k - i])))))
      ),
      ...d.map((dk, k) =>
        k < 4
          ? cat(
            set(c, shr(g(dk), 26)),
            set(h[k], i64.and(g(dk), M)),
            set(d[k + 1], add(g(d[k + 1]), g(c))),
          )
          : cat(
            set(c, shr(g(dk), 26)),
            set(h[4], i64.and(g(dk), M)),
            set(h[0], add(g(h[0]), mul(g(c), i64.const(5)))),
          )
      ),
      carry(h[0], h[1]),
    );

  const choose = (hk: number, gk: number) =>
    set(hk, i64.or(i64.and(g(hk), g(sel)), i64.and(g(gk), i64.xor(g(sel), i64.const(-1)))));
  // Sealing: the MAC covers `out` and the tag follows it; opening: `in`, tag at TAG_OUT.
  const macOf = mode === "seal" ? out : inp;
  const tagAt = (k: number) =>
    mode === "seal" ? i32.add(g(out), i32.add(g(len), i32.const(k))) : i32.const(TAG_OUT + k);

  const encrypt = [
    // Encrypt: data byte k takes keystream byte 64 + k.
    set(pos, i32.const(0)),
    set(ks, i32.const(64)),
    set(ctr, i32.const(0)),
    block(loop(
      brIf(1, i32.geU(g(pos), g(len))),
      ifThen(
        i32.eq(g(ks), i32.const(256)),
        set(ctr, i32.add(g(ctr), i32.const(4))),
        call(block4, g(ctr), g(n1), g(n2)),
        set(ks, i32.const(0)),
      ),
      set(n, i32.minU(i32.sub(i32.const(256), g(ks)), i32.sub(g(len), g(pos)), ta, tb)),
      set(i, i32.const(0)),
      block(loop(
        brIf(1, i32.gtU(i32.add(g(i), i32.const(16)), g(n))),
        v128.store(
          i32.add(g(out), i32.add(g(pos), g(i))),
          v128.xor(
            v128.load(i32.add(g(inp), i32.add(g(pos), g(i)))),
            v128.load(i32.add(g(ks), g(i)), KS),
          ),
        ),
        set(i, i32.add(g(i), i32.const(16))),
        br(0),
      )),
      block(loop(
        brIf(1, i32.geU(g(i), g(n))),
        i32.store8(
          i32.add(g(out), i32.add(g(pos), g(i))),
          i32.xor(
            i32.load8(i32.add(g(inp), i32.add(g(pos), g(i)))),
            i32.load8(i32.add(g(ks), g(i)), KS),
          ),
        ),
        set(i, i32.add(g(i), i32.const(1))),
        br(0),
      )),
      set(pos, i32.add(g(pos), g(n))),
      set(ks, i32.add(g(ks), g(n))),
      br(0),
    )),
  ];
  const mac = [
    // MAC over ciphertext ‖ zero padding to 16 ‖ le64(0) ‖ le64(len).
    ...h.map((hk) => set(hk, i64.const(0))),
    set(p, g(macOf)),
    set(end, i32.add(g(macOf), i32.and(g(len), i32.const(-16)))),
    block(loop(
      brIf(1, i32.geU(g(p), g(end))),
      polyBlock(g(p)),
      set(p, i32.add(g(p), i32.const(16))),
      br(0),
    )),
    ifThen(
      i32.and(g(len), i32.const(15)),
      i64.store(i32.const(PAD), i64.const(0)),
      i64.store(i32.const(PAD), i64.const(0), 8),
      set(i, i32.const(0)),
      block(loop(
        brIf(1, i32.geU(i32.add(g(end), g(i)), i32.add(g(macOf), g(len)))),
        i32.store8(i32.add(i32.const(PAD), g(i)), i32.load8(i32.add(g(end), g(i)))),
        set(i, i32.add(g(i), i32.const(1))),
        br(0),
      )),
      polyBlock(i32.const(PAD)),
    ),
    i64.store(i32.const(PAD), i64.const(0)),
    i64.store(i32.const(PAD), i64.extendU(g(len)), 8),
    polyBlock(i32.const(PAD)),
    // Full reduction mod 2^130 - 5, then + s mod 2^128.
    carry(h[1], h[2]),
    carry(h[2], h[3]),
    carry(h[3], h[4]),
    carry(h[4], h[0], 5),
    carry(h[0], h[1]),
    // g = h + 5 - 2^130 (= h - p), carried limb by limb.
    ...gl.map((gk, k) =>
      k < 4
        ? cat(
          set(gk, add(g(h[k]), k === 0 ? i64.const(5) : g(c))),
          set(c, shr(g(gk), 26)),
          set(gk, i64.and(g(gk), M)),
        )
        : set(gk, i64.sub(add(g(h[4]), g(c)), i64.const(1 << 26)))
    ),
    // h - p is negative (h < p): keep h; else take h - p.
    set(sel, i64.shrS(g(gl[4]), i64.const(63))),
    ...h.map((hk, k) => choose(hk, gl[k])),
    // The 130-bit h as four 32-bit words, plus the pad with carries, is the tag.
    ...[0, 1, 2, 3].map((k) =>
      cat(
        set(
          c,
          add(
            add(
              i64.and(
                i64.or(shr(g(h[k]), 6 * k), i64.shl(g(h[k + 1]), i64.const(26 - 6 * k))),
                i64.const(0xffffffff),
              ),
              g(pad[k]),
            ),
            k === 0 ? i64.const(0) : shr(g(c), 32),
          ),
        ),
        i64.store32(tagAt(4 * k), g(c)),
      )
    ),
  ];
  const body = cat(
    // Block 0 gives the Poly1305 key; blocks 1-3 the first 192 bytes of keystream.
    call(block4, i32.const(0), g(n1), g(n2)),
    ...r.map((rk, k) => set(rk, i64.and(limb(i32.const(KS), k), i64.const(R_CLAMP[k])))),
    ...s.map((sk, k) => set(sk, mul(g(r[k]), i64.const(5)))),
    ...pad.map((pk, k) => set(pk, i64.load32(i32.const(KS), 16 + 4 * k))),
    // Sealing MACs the ciphertext it wrote; opening MACs the ciphertext before decrypting it.
    ...(mode === "seal" ? [...encrypt, ...mac] : [...mac, ...encrypt]),
  );
  return {
    params: [I32, I32, I32, I32, I32],
    locals: [...Array(9).fill(I32), ...Array(I64_LOCALS).fill(I64)],
    body,
    export: mode,
  };
}

interface Exports {
  memory: WebAssembly.Memory;
  seal(inp: number, len: number, out: number, n1: number, n2: number): void;
  open(inp: number, len: number, out: number, n1: number, n2: number): void;
}

function bswap32(x: number): number {
  return ((x & 0xff) << 24) | ((x & 0xff00) << 8) | ((x >>> 8) & 0xff00) | (x >>> 24);
}

/** Seals (and opens) Noise transport records; one engine serves all connections (file comment). */
export class ChaChaSealEngine {
  readonly #exports: Exports;
  #mem: Uint8Array;
  /** Output memory made here (nothing else is ever reused), and the one free for reuse. */
  readonly #mine = new WeakSet<ArrayBuffer>();
  #spare: ArrayBuffer | null = null;
  /** Memory for small outputs, lent to one write at a time (#lendSlab). */
  #slab = new ArrayBuffer(REUSE_MIN);
  /** The view of the slab a write holds, if any. */
  #lent: Uint8Array | null = null;

  constructor() {
    const bytes = wasmModule(
      [block4Function(), sealFunction(0, "seal"), sealFunction(0, "open")],
      2,
    );
    const instance = new WebAssembly.Instance(new WebAssembly.Module(bytes), {});
    this.#exports = instance.exports as unknown as Exports;
    this.#mem = new Uint8Array(this.#exports.memory.buffer);
  }

  #ensure(bytes: number): Uint8Array {
    const have = this.#exports.memory.buffer.byteLength;
    if (bytes > have) this.#exports.memory.grow(Math.ceil((bytes - have) / PAGE));
    if (this.#mem.buffer !== this.#exports.memory.buffer) {
      this.#mem = new Uint8Array(this.#exports.memory.buffer);
    }
    return this.#mem;
  }

  /**
   * Frames `total` bytes of `pieces` as ceil(total / 4077) records (one for an empty input),
   * with nonces counter, counter + 1, …: Tailscale's 4 zero bytes ‖ the counter as u64
   * big-endian. Returns the records in one new buffer.
   */
  sealRecords(
    key: Uint8Array,
    counter: number,
    pieces: readonly Uint8Array[],
    total: number,
    lend = false,
    memory?: OutputMemory,
  ): Uint8Array {
    const records = Math.max(1, Math.ceil(total / MAX_PLAINTEXT_LEN));
    const outLen = total + records * (HEADER_LEN + TAG_LEN);
    const outStart = DATA + ((total + 15) & ~15);
    const mem = this.#ensure(outStart + outLen);
    mem.set(key, KEY);
    let off = DATA;
    for (const p of pieces) {
      mem.set(p, off);
      off += p.length;
    }
    const seal = this.#exports.seal;
    let src = 0;
    let dst = outStart;
    for (let r = 0; r < records; r++) {
      const len = Math.min(MAX_PLAINTEXT_LEN, total - src);
      const v = counter + r;
      mem[dst] = MSG_RECORD;
      mem[dst + 1] = (len + TAG_LEN) >> 8;
      mem[dst + 2] = (len + TAG_LEN) & 0xff;
      seal(
        DATA + src,
        len,
        dst + HEADER_LEN,
        bswap32(Math.floor(v / 0x1_0000_0000)),
        bswap32(v >>> 0),
      );
      src += len;
      dst += HEADER_LEN + len + TAG_LEN;
    }
    const frames = memory?.take(outLen) ??
      (lend && outLen < REUSE_MIN ? this.#lendSlab(outLen) : this.#output(outLen));
    frames.set(mem.subarray(outStart, outStart + outLen));
    return frames;
  }

  /**
   * Opens one record (ciphertext then its 16-byte tag, at least the tag) with nonce `counter`:
   * the plaintext in a new buffer, or null when the tag does not match (compared without an
   * early exit). Nothing of a forged record leaves the engine.
   */
  openRecord(key: Uint8Array, counter: number, sealed: Uint8Array): Buffer | null {
    const len = sealed.length - TAG_LEN;
    const mem = this.#ensure(DATA + sealed.length);
    mem.set(key, KEY);
    mem.set(sealed, DATA);
    this.#exports.open(
      DATA,
      len,
      DATA,
      bswap32(Math.floor(counter / 0x1_0000_0000)),
      bswap32(counter >>> 0),
    );
    let diff = 0;
    for (let k = 0; k < TAG_LEN; k++) diff |= mem[TAG_OUT + k] ^ mem[DATA + len + k];
    if (diff !== 0) return null;
    // Memory of its own, not a slice of Buffer's shared pool: a piece of it kept for later (a
    // request body, a partial frame) would keep the whole pool chunk alive.
    return Buffer.from(mem.slice(DATA, DATA + len).buffer);
  }

  /**
   * Output memory. A big output reuses the last one the socket took whole (`reuse`) when it is
   * at most a quarter bigger than needed: a fresh 256 KB ArrayBuffer costs ~0.4 ms per MB here
   * (zeroing, page faults) and drives the garbage collector. Only memory no socket holds comes
   * back, so a slow reader keeps exactly what it kept before.
   */
  #output(len: number): Buffer {
    if (len < REUSE_MIN) return Buffer.allocUnsafe(len);
    const spare = this.#spare;
    if (spare && spare.byteLength >= len && spare.byteLength - len <= len >> 2) {
      this.#spare = null;
      return Buffer.from(spare, 0, len);
    }
    const fresh = new ArrayBuffer(len);
    this.#mine.add(fresh);
    return Buffer.from(fresh, 0, len);
  }

  /**
   * A small output in the slab, for a caller that hands it back (`reuse`) when the socket takes
   * it at once, as a map stream's write almost always is: no allocation per write. A slab still
   * lent (its write had to wait) stays with its writer; the next output gets a new one.
   */
  #lendSlab(len: number): Uint8Array {
    if (this.#lent) this.#slab = new ArrayBuffer(REUSE_MIN);
    // A plain view: a Buffer's constructor costs more than the sealing of a small record.
    return this.#lent = new Uint8Array(this.#slab, 0, len);
  }

  /**
   * `frames` (from sealRecords) were taken whole by the socket before its write returned, so
   * nothing reads them any more: their memory may serve the next output.
   */
  reuse(frames: Uint8Array): void {
    if (frames === this.#lent) this.#lent = null;
    else if (this.#mine.has(frames.buffer as ArrayBuffer)) {
      this.#spare = frames.buffer as ArrayBuffer;
    }
  }
}
