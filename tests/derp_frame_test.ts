import assert from "node:assert/strict";
import {
  encodeFrame,
  FrameError,
  FrameReader,
  type FrameVerdict,
  looksLikeDisco,
} from "../lib/derp/frame.ts";
import { BoxPrivateKey, openBox, sealBox } from "../lib/derp/naclbox.ts";
import { keyId, nodeKeyText, parseNodeKeyText } from "../lib/derp/keys.ts";

function collect(classify: (t: number, l: number) => FrameVerdict = () => "deliver") {
  const frames: { type: number; payload: number[] }[] = [];
  const errors: string[] = [];
  const r = new FrameReader(
    classify,
    (type, payload) => frames.push({ type, payload: [...payload] }),
    (e) => errors.push(e.message),
  );
  return { r, frames, errors };
}

Deno.test("derp frames: whole, batched and split frames come out identical", () => {
  const stream = new Uint8Array([
    ...encodeFrame(1, Uint8Array.of(1, 2, 3)),
    ...encodeFrame(2),
    ...encodeFrame(3, new Uint8Array(300).fill(7)),
  ]);
  const want = [
    { type: 1, payload: [1, 2, 3] },
    { type: 2, payload: [] },
    { type: 3, payload: new Array(300).fill(7) },
  ];
  for (const step of [1, 2, 3, 5, 6, 7, 64, stream.length]) {
    const { r, frames, errors } = collect();
    for (let off = 0; off < stream.length; off += step) r.push(stream.slice(off, off + step));
    assert.deepEqual(frames, want, `chunk size ${step}`);
    assert.deepEqual(errors, []);
    assert.equal(r.buffered, 0);
  }
});

Deno.test("derp frames: a large split frame is gathered exactly, holding only what arrived", () => {
  const { r, frames } = collect();
  const body = Uint8Array.from({ length: 100_000 }, (_, i) => (i * 31) & 0xff);
  const frame = encodeFrame(5, body);
  r.push(frame.subarray(0, 3));
  assert.equal(r.buffered, 3);
  for (let off = 3; off < 1003; off += 10) r.push(frame.subarray(off, off + 10));
  assert.equal(r.buffered, 1003);
  r.push(Uint8Array.from([...frame.subarray(1003), ...encodeFrame(6, Uint8Array.of(9))]));
  assert.equal(frames.length, 2);
  assert.deepEqual(frames[0].payload, [...body]);
  assert.deepEqual(frames[1], { type: 6, payload: [9] });
  assert.equal(r.buffered, 0);
});

Deno.test("derp frames: skipped frames are never buffered, refused ones stop the reader", () => {
  const skipBig = (t: number) => t === 9 ? "skip" as const : "deliver" as const;
  const { r, frames } = collect(skipBig);
  const big = encodeFrame(9, new Uint8Array(100_000));
  for (let off = 0; off < big.length; off += 1000) {
    r.push(big.slice(off, off + 1000));
    assert.ok(r.buffered < 5, "skipped payload is not held");
  }
  r.push(encodeFrame(4, Uint8Array.of(42)));
  assert.deepEqual(frames, [{ type: 4, payload: [42] }]);

  const limited = collect((_t, len) => len > 10 ? new FrameError(`too long: ${len}`) : "deliver");
  limited.r.push(Uint8Array.of(4, 0, 0, 0, 11));
  limited.r.push(encodeFrame(4, Uint8Array.of(1)));
  assert.deepEqual(limited.errors, ["too long: 11"]);
  assert.deepEqual(limited.frames, [], "nothing after a refused header");
});

Deno.test("derp frames: length is read as unsigned 32-bit big-endian", () => {
  const seen: number[] = [];
  const r = new FrameReader(
    (_t, len) => {
      seen.push(len);
      return new FrameError("stop");
    },
    () => {},
    () => {},
  );
  r.push(Uint8Array.of(1, 0xff, 0xff, 0xff, 0xff));
  assert.deepEqual(seen, [0xffffffff]);
});

Deno.test("derp frames: disco packets are recognized by magic and minimum length", () => {
  const magic = [0x54, 0x53, 0xf0, 0x9f, 0x92, 0xac];
  assert.equal(looksLikeDisco(Uint8Array.from([...magic, ...new Array(56).fill(0)])), true);
  assert.equal(looksLikeDisco(Uint8Array.from([...magic, ...new Array(55).fill(0)])), false);
  assert.equal(looksLikeDisco(new Uint8Array(100)), false);
});

function unhex(h: string): Uint8Array {
  return Uint8Array.from(h.match(/../g)!.map((x) => parseInt(x, 16)));
}

Deno.test("derp nacl box: matches golang.org/x/crypto/nacl/box output", () => {
  // Vector produced with Go's box.Seal: alice (1..32) to bob (0x80..0x9f), nonce 0x40..0x57.
  const alice = Uint8Array.from({ length: 32 }, (_, i) => i + 1);
  const bob = Uint8Array.from({ length: 32 }, (_, i) => 0x80 + i);
  const nonce = Uint8Array.from({ length: 24 }, (_, i) => 0x40 + i);
  const msg = new TextEncoder().encode('{"version":2,"CanAckPings":true}');
  const want = unhex(
    "a60f44b786d2109bf4a20d9f2c19c939aabff780ce9e4399be2b0042aa107cb5" +
      "c04b6a089c5d18dfbec1528c3c0387ee",
  );
  const a = new BoxPrivateKey(alice);
  const b = new BoxPrivateKey(bob);
  assert.deepEqual(
    a.publicKey,
    unhex("07a37cbc142093c8b755dc1b10e86cb426374ad16aa853ed0bdfc0b2b86d1c7c"),
  );
  assert.deepEqual(
    b.publicKey,
    unhex("493e82fc74464a59268817623d2053c5eb8e2cc4a988b4fee179ec6b010d531d"),
  );
  assert.deepEqual(sealBox(a.sharedKey(b.publicKey), nonce, msg), want);
  assert.deepEqual(openBox(b.sharedKey(a.publicKey), nonce, want), msg);
  const tampered = want.slice();
  tampered[20] ^= 1;
  assert.equal(openBox(b.sharedKey(a.publicKey), nonce, tampered), null);
  assert.equal(openBox(b.sharedKey(a.publicKey), nonce, new Uint8Array(5)), null);
  assert.throws(() => a.sharedKey(new Uint8Array(32)), "low-order point refused");
});

Deno.test("derp keys: nodekey text round-trips and rejects malformed text", () => {
  const raw = Uint8Array.from({ length: 32 }, (_, i) => i * 7);
  const text = nodeKeyText(raw);
  assert.match(text, /^nodekey:[0-9a-f]{64}$/);
  assert.deepEqual(parseNodeKeyText(text), raw);
  for (const bad of ["", "nodekey:", "mkey:" + "0".repeat(64), "nodekey:" + "A".repeat(64)]) {
    assert.equal(parseNodeKeyText(bad), null, bad);
  }
  assert.equal(keyId(raw), keyId(raw.slice()));
  assert.notEqual(keyId(raw), keyId(new Uint8Array(32)));
});
