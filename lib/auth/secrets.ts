/**
 * Pre-auth and API keys: `hskey-auth-<prefix>-<secret>` and `hskey-api-<prefix>-<secret>`, as
 * headscale writes them. The prefix (12 hex) finds the row; only a hash of the secret (64 hex)
 * is stored, and it is compared in constant time. The full key is shown once, at creation.
 *
 * The secret is 256 random bits, so a slow password hash buys nothing (nobody can guess it,
 * however fast each guess) and cost every registration ~30 ms of CPU: new keys are stored as a
 * salted HMAC-SHA256 (microseconds). Hashes stored before (scrypt) and keys imported from
 * headscale (bcrypt) are still verified as they are.
 */
import { createHmac, randomBytes, scrypt, timingSafeEqual } from "node:crypto";
import bcrypt from "bcryptjs";

export type KeyKind = "auth" | "api";

const PREFIX_LEN = 12;
const SECRET_LEN = 64;

export interface NewSecret {
  /** The whole key, to show the user once. */
  full: string;
  prefix: string;
  /** The stored form (never the secret itself). */
  hash: string;
}

export interface ParsedKey {
  kind: KeyKind;
  prefix: string;
  secret: string;
}

function hex(n: number): string {
  return randomBytes(Math.ceil(n / 2)).toString("hex").slice(0, n);
}

function scryptAsync(secret: string, salt: Buffer, N: number, r: number, p: number, len: number) {
  return new Promise<Buffer>((resolve, reject) =>
    scrypt(
      secret,
      salt,
      len,
      { N, r, p, maxmem: 256 * N * r },
      (err, key) => err ? reject(err) : resolve(key),
    )
  );
}

function hmac(salt: Buffer, secret: string): Buffer {
  return createHmac("sha256", salt).update(secret, "utf8").digest();
}

/** The stored form of a new secret: `hmac-sha256$<salt>$<mac>` (base64). */
// deno-lint-ignore require-await
export async function hashSecret(secret: string): Promise<string> {
  const salt = randomBytes(16);
  return `hmac-sha256$${salt.toString("base64")}$${hmac(salt, secret).toString("base64")}`;
}

/** True when `secret` matches the stored hash; constant-time in the secret. */
export async function verifySecret(secret: string, stored: string): Promise<boolean> {
  // Keys imported from headscale keep the bcrypt hash it stored ($2a$…).
  if (/^\$2[aby]\$\d\d\$/.test(stored)) return await bcrypt.compare(secret, stored);
  const parts = stored.split("$");
  if (parts.length === 3 && parts[0] === "hmac-sha256") {
    const want = Buffer.from(parts[2], "base64");
    const got = hmac(Buffer.from(parts[1], "base64"), secret);
    return want.length === got.length && timingSafeEqual(got, want);
  }
  // Hashes written by earlier versions (scrypt).
  if (parts.length !== 6 || parts[0] !== "scrypt") return false;
  const [N, r, p] = parts.slice(1, 4).map(Number);
  const salt = Buffer.from(parts[4], "base64");
  const want = Buffer.from(parts[5], "base64");
  const got = await scryptAsync(secret, salt, N, r, p, want.length);
  return got.length === want.length && timingSafeEqual(got, want);
}

export async function generateKey(kind: KeyKind): Promise<NewSecret> {
  const prefix = hex(PREFIX_LEN);
  const secret = hex(SECRET_LEN);
  return { full: `hskey-${kind}-${prefix}-${secret}`, prefix, hash: await hashSecret(secret) };
}

/** The row prefix of a pre-auth key from before headscale v0.28 (48 hex, stored in plain text). */
export function legacyAuthKeyPrefix(key: string): string {
  return "." + key.slice(0, PREFIX_LEN);
}

/**
 * Splits a key into its parts; null when it is not a well-formed key of that kind. Besides ours
 * (hex), headscale's keys parse too: `hskey-*` with base64url prefix and secret, API keys of the
 * older `<7>.<32>` form, and pre-auth keys of the older plain 48-hex form (whose row prefix is
 * legacyAuthKeyPrefix and whose secret is the whole key).
 */
export function parseKey(text: string, kind: KeyKind): ParsedKey | null {
  const head = `hskey-${kind}-`;
  if (!text.startsWith(head)) return parseLegacyKey(text, kind);
  const rest = text.slice(head.length);
  const prefix = rest.slice(0, PREFIX_LEN);
  const secret = rest.slice(PREFIX_LEN + 1);
  if (
    rest[PREFIX_LEN] !== "-" || !/^[\w-]{12}$/.test(prefix) || !/^[\w-]{64}$/.test(secret)
  ) {
    return null;
  }
  return { kind, prefix, secret };
}

function parseLegacyKey(text: string, kind: KeyKind): ParsedKey | null {
  if (kind === "api") {
    const m = /^([\w-]{7})\.([\w-]{32})$/.exec(text);
    return m ? { kind, prefix: m[1], secret: m[2] } : null;
  }
  return /^[0-9a-f]{48}$/.test(text)
    ? { kind, prefix: legacyAuthKeyPrefix(text), secret: text }
    : null;
}

/** How a key is shown after creation: its prefix only. */
export function maskedKey(kind: KeyKind, prefix: string): string {
  return `hskey-${kind}-${prefix}-***`;
}
