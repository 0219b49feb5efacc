import assert from "node:assert/strict";
import { generateKey, hashSecret, maskedKey, parseKey, verifySecret } from "../lib/auth/secrets.ts";

Deno.test("secrets: generated keys parse back and verify against their stored hash", async () => {
  const key = await generateKey("auth");
  assert.match(key.full, /^hskey-auth-[0-9a-f]{12}-[0-9a-f]{64}$/);
  assert.ok(!key.hash.includes(key.full.slice(-64)), "the secret is not stored");
  const parsed = parseKey(key.full, "auth")!;
  assert.equal(parsed.prefix, key.prefix);
  assert.ok(await verifySecret(parsed.secret, key.hash));
});

Deno.test("secrets: a wrong secret, a wrong kind or a malformed key is refused", async () => {
  const key = await generateKey("api");
  const parsed = parseKey(key.full, "api")!;
  const flipped = parsed.secret.slice(0, -1) + (parsed.secret.endsWith("0") ? "1" : "0");
  assert.equal(await verifySecret(flipped, key.hash), false);
  assert.equal(parseKey(key.full, "auth"), null);
  for (
    const bad of ["", "hskey-api-", "hskey-api-short-abc", key.full + "0", key.full.toUpperCase()]
  ) {
    assert.equal(parseKey(bad, "api"), null, bad);
  }
  assert.equal(await verifySecret("x", "plain-text-not-a-hash"), false);
});

Deno.test("secrets: hashes are salted", async () => {
  const a = await hashSecret("same");
  const b = await hashSecret("same");
  assert.notEqual(a, b);
  assert.ok(await verifySecret("same", a) && await verifySecret("same", b));
  assert.equal(maskedKey("auth", "0123456789ab"), "hskey-auth-0123456789ab-***");
});

Deno.test("secrets: new keys are a salted HMAC; scrypt hashes stored before still verify", async () => {
  const fresh = await generateKey("auth");
  assert.match(fresh.hash, /^hmac-sha256\$[\w+/=]+\$[\w+/=]+$/);
  const parsed = parseKey(fresh.full, "auth")!;
  assert.ok(await verifySecret(parsed.secret, fresh.hash));
  assert.equal(await verifySecret(parsed.secret.replace(/.$/, "x"), fresh.hash), false);
  assert.equal(await verifySecret(parsed.secret, fresh.hash.replace(/.{4}$/, "AAA=")), false);
  // Written by an earlier version: scrypt N=16384, r=8, p=1 of "old-secret".
  const salt = "c2FsdHNhbHRzYWx0c2FsdA==";
  const { scryptSync } = await import("node:crypto");
  const key = scryptSync("old-secret", Buffer.from(salt, "base64"), 32, { N: 1 << 14, r: 8, p: 1 });
  const old = `scrypt$16384$8$1$${salt}$${key.toString("base64")}`;
  assert.ok(await verifySecret("old-secret", old));
  assert.equal(await verifySecret("other", old), false);
});
