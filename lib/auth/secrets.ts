/**
 * Pre-auth and API keys: `hskey-auth-<prefix>-<secret>` and `hskey-api-<prefix>-<secret>`, as
 * headscale writes them. The prefix (12 hex) finds the row; only a slow hash of the secret (64 hex)
 * is stored, and it is compared in constant time. The full key is shown once, at creation.
 */
import { randomBytes, scrypt, timingSafeEqual } from "node:crypto";

export type KeyKind = "auth" | "api";

const PREFIX_LEN = 12;
const SECRET_LEN = 64;
// scrypt cost: ~30 ms a hash on a small machine; a key is checked once per session or request.
const SCRYPT = { N: 1 << 14, r: 8, p: 1, keylen: 32 };

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

export async function hashSecret(secret: string): Promise<string> {
  const salt = randomBytes(16);
  const { N, r, p, keylen } = SCRYPT;
  const key = await scryptAsync(secret, salt, N, r, p, keylen);
  return `scrypt$${N}$${r}$${p}$${salt.toString("base64")}$${key.toString("base64")}`;
}

/** True when `secret` matches the stored hash; constant-time in the secret. */
export async function verifySecret(secret: string, stored: string): Promise<boolean> {
  const parts = stored.split("$");
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

/** Splits a key into its parts; null when it is not a well-formed key of that kind. */
export function parseKey(text: string, kind: KeyKind): ParsedKey | null {
  const head = `hskey-${kind}-`;
  if (!text.startsWith(head)) return null;
  const rest = text.slice(head.length);
  const prefix = rest.slice(0, PREFIX_LEN);
  const secret = rest.slice(PREFIX_LEN + 1);
  if (
    rest[PREFIX_LEN] !== "-" || !/^[0-9a-f]{12}$/.test(prefix) || !/^[0-9a-f]{64}$/.test(secret)
  ) {
    return null;
  }
  return { kind, prefix, secret };
}

/** How a key is shown after creation: its prefix only. */
export function maskedKey(kind: KeyKind, prefix: string): string {
  return `hskey-${kind}-${prefix}-***`;
}
