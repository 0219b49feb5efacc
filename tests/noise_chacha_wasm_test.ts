import assert from "node:assert/strict";
import fc from "fast-check";
import { ChaChaSealEngine } from "../lib/noise/chacha_wasm.ts";
import { RecordOpener, RecordSealer } from "../lib/noise/records.ts";
import { HEADER_LEN, MAX_PLAINTEXT_LEN } from "../lib/noise/messages.ts";

const hex = (s: string) =>
  Uint8Array.from(s.replace(/\s+/g, "").match(/../g)!, (b) => parseInt(b, 16));

Deno.test("chacha wasm: RFC 8439 §2.4.2 ciphertext (its nonce is counter 0x4a << 32 in Tailscale's layout)", () => {
  const key = Uint8Array.from({ length: 32 }, (_, i) => i);
  const plaintext = new TextEncoder().encode(
    "Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the " +
      "future, sunscreen would be it.",
  );
  const want = hex(`
    6e 2e 35 9a 25 68 f9 80 41 ba 07 28 dd 0d 69 81 e9 7e 7a ec 1d 43 60 c2 0a 27 af cc fd 9f ae 0b
    f9 1b 65 c5 52 47 33 ab 8f 59 3d ab cd 62 b3 57 16 39 d6 24 e6 51 52 ab 8f 53 0c 35 9f 08 61 d8
    07 ca 0d bf 50 0d 6a 61 56 a3 8e 08 8a 22 b6 5e 52 bc 51 4d 16 cc f8 06 81 8c e9 1a b7 79 37 36
    5a f9 0b bf 74 a3 5b e6 b4 0b 8e ed f2 78 5e 42 87 4d`);
  const frames = new ChaChaSealEngine().sealRecords(key, 0x4a * 2 ** 32, [plaintext], 114);
  assert.equal(frames.length, HEADER_LEN + 114 + 16);
  assert.deepEqual([...frames.subarray(0, HEADER_LEN)], [0x04, 0, 114 + 16]);
  assert.deepEqual(new Uint8Array(frames.subarray(HEADER_LEN, HEADER_LEN + 114)), want);
});

Deno.test("chacha wasm: records equal node:crypto's for any length, split and counter, and open", () => {
  const engine = new ChaChaSealEngine();
  const edges = [0, 1, 15, 16, 17, 63, 64, 65, 191, 192, 193, 255, 256, 257, 4076, 4077, 4078];
  fc.assert(
    fc.property(
      fc.oneof(fc.constantFrom(...edges), fc.integer({ min: 0, max: 3 * MAX_PLAINTEXT_LEN + 5 })),
      fc.uint8Array({ minLength: 32, maxLength: 32 }),
      fc.integer({ min: 0, max: 5 }),
      fc.integer({ min: 0, max: 100 }),
      fc.integer({ min: 0, max: 2 }),
      (len, key, skip, cut, seed) => {
        const plain = Uint8Array.from({ length: len }, (_, i) => (i * 131 + seed * 7) & 0xff);
        const native = new RecordSealer(key);
        const wasm = new RecordSealer(key, engine);
        const opener = new RecordOpener(key);
        for (let i = 0; i < skip; i++) {
          const a = native.seal(Uint8Array.of(i));
          const b = wasm.seal(Uint8Array.of(i));
          assert.deepEqual(b, a);
          opener.open(b.subarray(HEADER_LEN));
        }
        const at = Math.min(len, Math.floor(len * cut / 100));
        const a = native.seal(plain);
        const b = wasm.sealPieces([plain.subarray(0, at), plain.subarray(at)], len);
        assert.deepEqual(b, a);
        assert.equal(wasm.count, native.count);
        // The records open with node:crypto to the plaintext, in order.
        const out: Uint8Array[] = [];
        for (let off = 0; off < b.length;) {
          const size = (b[off + 1] << 8) | b[off + 2];
          out.push(opener.open(b.subarray(off + HEADER_LEN, off + HEADER_LEN + size)));
          off += HEADER_LEN + size;
        }
        assert.deepEqual(new Uint8Array(Buffer.concat(out)), plain);
      },
    ),
    { numRuns: 300 },
  );
});

Deno.test("chacha wasm: one engine serves interleaved connections; a large write grows its memory", () => {
  const engine = new ChaChaSealEngine();
  const keys = [new Uint8Array(32).fill(1), new Uint8Array(32).fill(2)];
  const wasm = keys.map((k) => new RecordSealer(k, engine));
  const native = keys.map((k) => new RecordSealer(k));
  const big = Uint8Array.from({ length: 300_000 }, (_, i) => i & 0xff);
  for (const msg of [Uint8Array.of(1, 2, 3), big, new Uint8Array(0), big.subarray(7, 9000)]) {
    for (const i of [0, 1]) assert.deepEqual(wasm[i].seal(msg), native[i].seal(msg));
  }
});

/** Byte equality (assert.deepEqual walks big views over a larger buffer far too slowly). */
function same(got: Uint8Array, want: Uint8Array): void {
  assert.equal(got.length, want.length);
  assert.ok(Buffer.compare(got, want) === 0, "bytes differ");
}

Deno.test("chacha wasm: a big output's memory is reused only after reuse(), and only for a similar size", () => {
  const engine = new ChaChaSealEngine();
  const key = new Uint8Array(32).fill(9);
  const sealer = new RecordSealer(key, engine);
  const native = new RecordSealer(key);
  const plain = (n: number, seed: number) =>
    Uint8Array.from({ length: n }, (_, i) => (i * seed) & 0xff);
  const seal = (n: number, seed: number) => {
    const got = sealer.seal(plain(n, seed));
    same(got, native.seal(plain(n, seed)));
    return got;
  };
  const a = seal(100_000, 3);
  const b = seal(100_000, 5);
  assert.ok(b.buffer !== a.buffer, "not given back: b has its own memory");
  same(a, new RecordSealer(key).seal(plain(100_000, 3)));
  sealer.reuse(a);
  const c = seal(90_000, 7);
  assert.ok(c.buffer === a.buffer, "given back: reused for a slightly smaller output");
  sealer.reuse(c);
  const d = seal(50_000, 11);
  assert.ok(d.buffer !== c.buffer, "not for an output of half the size");
  const e = seal(120_000, 13);
  assert.ok(e.buffer !== c.buffer, "nor for a bigger one");
  // Small outputs and foreign memory never take part.
  const small = seal(1_000, 17);
  sealer.reuse(small);
  sealer.reuse(new Uint8Array(100_000));
  const f = seal(99_000, 19);
  assert.ok(f.buffer === c.buffer, "the last given-back memory is still the one reused");
});

Deno.test("chacha wasm: a lent small output comes back only when handed back; one still held is never written again", () => {
  const engine = new ChaChaSealEngine();
  const key = new Uint8Array(32).fill(9);
  const lent = new RecordSealer(key, engine);
  const plain = new RecordSealer(key);
  const msg = (i: number) => Uint8Array.from({ length: 100 + i }, (_, k) => (k + i) & 0xff);
  const a = lent.sealPieces([msg(0)], 100, true);
  assert.deepEqual(Buffer.from(a), plain.seal(msg(0)));
  lent.reuse(a); // the socket took it whole
  const b = lent.sealPieces([msg(1)], 101, true);
  assert.equal(b.buffer, a.buffer, "handed back: the same memory serves the next output");
  const kept = Buffer.from(b); // b is not handed back: a write still holds it
  const c = lent.sealPieces([msg(2)], 102, true);
  assert.notEqual(c.buffer, b.buffer, "still held: the next output gets new memory");
  assert.ok(kept.equals(b), "and what the write holds is untouched");
  plain.seal(msg(1));
  assert.deepEqual(Buffer.from(c), plain.seal(msg(2)));
  const d = lent.sealPieces([msg(3)], 103);
  lent.reuse(d);
  assert.notEqual(d.buffer, c.buffer, "without lend, never the slab");
});

Deno.test("chacha wasm: opens what node:crypto seals, for any length and counter; any flipped bit is refused", () => {
  const engine = new ChaChaSealEngine();
  fc.assert(
    fc.property(
      fc.integer({ min: 0, max: MAX_PLAINTEXT_LEN }),
      fc.uint8Array({ minLength: 32, maxLength: 32 }),
      fc.integer({ min: 0, max: 3 }),
      fc.nat(),
      (len, key, skip, flip) => {
        const plain = Uint8Array.from({ length: len }, (_, i) => (i * 151 + skip) & 0xff);
        const sealer = new RecordSealer(key);
        const opener = new RecordOpener(key, engine);
        for (let i = 0; i < skip; i++) {
          const r = sealer.seal(Uint8Array.of(i));
          assert.deepEqual([...opener.open(r.subarray(HEADER_LEN))], [i]);
        }
        const record = sealer.seal(plain).subarray(HEADER_LEN);
        // A flipped bit anywhere (ciphertext or tag) fails, and the opener stays failed.
        const bad = new RecordOpener(key, engine);
        const again = new RecordSealer(key);
        for (let i = 0; i < skip; i++) bad.open(again.seal(Uint8Array.of(i)).subarray(HEADER_LEN));
        const forged = Uint8Array.from(record);
        forged[flip % forged.length] ^= 1 << (flip % 8);
        assert.throws(() => bad.open(forged), /failed to decrypt/);
        assert.throws(() => bad.open(record), /desynchronized/);
        // The genuine record opens to the plaintext.
        assert.deepEqual(new Uint8Array(opener.open(record)), plain);
        assert.equal(opener.count, skip + 1);
      },
    ),
    { numRuns: 200 },
  );
});
