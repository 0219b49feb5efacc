/**
 * The one id space of auth requests. Two formats live in it, and cannot collide:
 *
 * - ids the server makes (a login's `/register/<id>`, an SSH check's `/auth/<id>`): 24 random
 *   letters and digits, `newAuthId`;
 * - ids an admin chooses for `debug create-node`: headscale's registration ids (types.AuthID),
 *   "hskey-authreq-" and 24 URL-safe characters, checked by `registrationIdProblem`.
 *
 * `isAuthId` accepts both: what a URL or a CLI flag may name before the registry is asked.
 */
import { randomBytes } from "node:crypto";

const ID_PATTERN = /^[A-Za-z0-9_-]{16,64}$/;

export function isAuthId(text: string): boolean {
  return ID_PATTERN.test(text);
}

const ALPHANUMERIC = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/**
 * 24 random letters and digits (~143 bits). No "-" or "_": an id starting with "-" would read
 * as a flag in `auth register --auth-id <id>`.
 */
export function newAuthId(): string {
  let id = "";
  while (id.length < 24) {
    for (const b of randomBytes(32)) {
      // 248 = 4 × 62: rejecting larger bytes keeps every character equally likely.
      if (b < 248 && id.length < 24) id += ALPHANUMERIC[b % 62];
    }
  }
  return id;
}

/** headscale's registration ids (types.AuthID): "hskey-authreq-" and 24 URL-safe characters. */
const REGISTRATION_ID = /^hskey-authreq-[A-Za-z0-9_-]{24}$/;

/** Checks a registration id as headscale's types.AuthIDFromString does; null when valid. */
export function registrationIdProblem(text: string): string | null {
  if (REGISTRATION_ID.test(text)) return null;
  return `invalid registration key "${text}": expected "hskey-authreq-" followed by 24 ` +
    'letters, digits, "-" or "_" (38 characters)';
}
