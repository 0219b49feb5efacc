import assert from "node:assert/strict";
import { x25519 as nobleX25519 } from "@noble/curves/ed25519.js";
import {
  formatKey,
  formatPrivateKey,
  generateKeyPair,
  isZeroKey,
  KeyParseError,
  keysEqual,
  parseKey,
  parsePrivateKey,
  publicKeyOf,
  shortKey,
  zeroKeyText,
} from "../lib/tailcfg/keys.ts";

const HEX = "0123456789abcdef".repeat(4);
const bytesOf = (hex: string) => new Uint8Array(Buffer.from(hex, "hex"));

Deno.test("keys: parse and format every text form", () => {
  for (const kind of ["mkey", "nodekey", "discokey", "nlpub", "chalpub", "privkey"] as const) {
    const raw = parseKey(`${kind}:${HEX}`, kind);
    assert.deepEqual(raw, bytesOf(HEX));
    assert.equal(formatKey(raw, kind), `${kind}:${HEX}`);
  }
});

Deno.test("keys: upper-case hex is accepted (as Go's parser does), output is lowercase", () => {
  const raw = parseKey(`nodekey:${HEX.toUpperCase()}`, "nodekey");
  assert.equal(formatKey(raw, "nodekey"), `nodekey:${HEX}`);
});

Deno.test("keys: wrong prefix, length or digits are clear errors", () => {
  assert.throws(() => parseKey(`mkey:${HEX}`, "nodekey"), /does not start with "nodekey:"/);
  assert.throws(() => parseKey(HEX, "mkey"), KeyParseError);
  assert.throws(() => parseKey(`mkey:${HEX}00`, "mkey"), /expected 64 hex digits.*got 66/);
  assert.throws(() => parseKey("mkey:", "mkey"), /got 0/);
  assert.throws(() => parseKey(`mkey:${HEX.slice(0, 63)}g`, "mkey"), /non-hex digit/);
  assert.throws(() => parseKey("", "discokey"), KeyParseError);
  assert.throws(() => formatKey(new Uint8Array(31), "mkey"), /expected 32 bytes/);
});

Deno.test("keys: a bad private key text is not echoed in the error", () => {
  const secret = "privkey:" + "ab".repeat(31) + "zz";
  assert.throws(
    () => parsePrivateKey(secret),
    (e: Error) => e instanceof KeyParseError && !e.message.includes("abab"),
  );
});

Deno.test("keys: zero keys", () => {
  assert.equal(zeroKeyText("mkey"), "mkey:" + "0".repeat(64));
  assert.ok(isZeroKey(zeroKeyText("nodekey")));
  assert.ok(isZeroKey(new Uint8Array(32)));
  assert.ok(!isZeroKey(`nodekey:${HEX}`));
  assert.ok(!isZeroKey(bytesOf(HEX)));
  assert.ok(!isZeroKey("nodekey:"));
  assert.ok(!isZeroKey(""));
});

Deno.test("keys: X25519 public key matches RFC 7748 section 6.1", () => {
  const alicePriv = bytesOf("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a");
  assert.equal(
    Buffer.from(publicKeyOf(alicePriv)).toString("hex"),
    "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a",
  );
});

Deno.test("keys: generated pairs are consistent with an independent X25519 (noble)", () => {
  const a = generateKeyPair();
  const b = generateKeyPair();
  assert.equal(a.privateKey.length, 32);
  assert.deepEqual(a.publicKey, publicKeyOf(a.privateKey));
  assert.deepEqual(a.publicKey, nobleX25519.getPublicKey(a.privateKey));
  assert.ok(!keysEqual(a.privateKey, b.privateKey));
});

Deno.test("keys: privkey text round trip, tolerant of a trailing newline", () => {
  const { privateKey } = generateKeyPair();
  const text = formatPrivateKey(privateKey);
  assert.match(text, /^privkey:[0-9a-f]{64}$/);
  assert.deepEqual(parsePrivateKey(text + "\n"), privateKey);
});

Deno.test("keys: keysEqual and shortKey", () => {
  const k = bytesOf(HEX);
  assert.ok(keysEqual(k, bytesOf(HEX)));
  assert.ok(!keysEqual(k, new Uint8Array(32)));
  assert.ok(!keysEqual(k, k.subarray(1)));
  assert.equal(shortKey(k), "[ASNFZ]");
});
