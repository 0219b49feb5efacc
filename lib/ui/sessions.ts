/**
 * Who is signed in to the admin UI, and the one-time links that sign someone in.
 *
 * A session is a random `<prefix>.<secret>` (12 + 64 hex) that only the browser's cookie holds;
 * the database keeps the prefix and a salted hash of the secret (lib/auth/secrets.ts), so a copy
 * of the database signs nobody in, and sessions survive a restart. Checked in constant time;
 * expired after `admin_ui.session_duration`; revoked by deleting the row.
 *
 * A sign-in link's token has the same shape, is kept hashed in memory only (a restart forgets
 * unused links), is valid for 10 minutes, and is used up by the first successful sign-in.
 *
 * The CSRF token of a session is an HMAC of the fixed string "csrf" under the session secret:
 * only someone holding the cookie can compute it, and nothing more needs to be stored.
 */
import { createHmac, randomBytes } from "node:crypto";
import { hashSecret, verifySecret } from "../auth/secrets.ts";
import type { AdminSessionRecord, Store } from "../store/types.ts";

export const SIGNIN_LINK_TTL_MS = 10 * 60_000;
const MAX_LINKS = 100;

interface Token {
  full: string;
  prefix: string;
  secret: string;
}

function newToken(): Token {
  const prefix = randomBytes(6).toString("hex");
  const secret = randomBytes(32).toString("hex");
  return { full: `${prefix}.${secret}`, prefix, secret };
}

function parseToken(text: string): Token | null {
  const m = /^([0-9a-f]{12})\.([0-9a-f]{64})$/.exec(text);
  return m ? { full: text, prefix: m[1], secret: m[2] } : null;
}

/** The signed-in admin, as pages see it. */
export interface Admin {
  sessionId: number;
  identity: string;
  displayName: string;
  expiresAt: Date;
  /** The form field every POST must carry. */
  csrfToken: string;
}

export function csrfTokenFor(secret: string): string {
  return createHmac("sha256", secret).update("csrf").digest("base64url");
}

export interface AdminSessionsOptions {
  store: Store;
  durationMs: number;
  now?: () => Date;
}

export class AdminSessions {
  readonly #store: Store;
  readonly #durationMs: number;
  readonly #now: () => Date;
  /** Every live session by prefix; the database is the durable copy. */
  readonly #byPrefix = new Map<string, AdminSessionRecord>();

  constructor(opts: AdminSessionsOptions) {
    this.#store = opts.store;
    this.#durationMs = opts.durationMs;
    this.#now = opts.now ?? (() => new Date());
  }

  /** Reads the sessions from the database (at start), dropping expired ones. */
  async load(): Promise<void> {
    for (const s of await this.#store.listAdminSessions()) {
      if (this.#expired(s)) await this.#store.deleteAdminSession(s.id).catch(() => {});
      else this.#byPrefix.set(s.prefix, s);
    }
  }

  #expired(s: AdminSessionRecord): boolean {
    return s.expiresAt.getTime() <= this.#now().getTime();
  }

  /** A new session; `cookie` is the value for the browser (never stored). */
  async create(who: { identity: string; displayName: string; clientAddr: string }): Promise<{
    record: AdminSessionRecord;
    cookie: string;
  }> {
    const token = newToken();
    const now = this.#now();
    const record = await this.#store.insertAdminSession({
      prefix: token.prefix,
      hash: await hashSecret(token.secret),
      identity: who.identity,
      displayName: who.displayName,
      clientAddr: who.clientAddr,
      createdAt: now,
      expiresAt: new Date(now.getTime() + this.#durationMs),
    });
    this.#byPrefix.set(record.prefix, record);
    return { record, cookie: token.full };
  }

  /** The admin a cookie value belongs to; null when unknown, wrong, expired or revoked. */
  async check(cookie: string): Promise<Admin | null> {
    const token = parseToken(cookie);
    if (!token) return null;
    const s = this.#byPrefix.get(token.prefix);
    if (!s || !(await verifySecret(token.secret, s.hash))) return null;
    if (this.#expired(s)) {
      await this.revoke(s.id).catch(() => {});
      return null;
    }
    return {
      sessionId: s.id,
      identity: s.identity,
      displayName: s.displayName,
      expiresAt: s.expiresAt,
      csrfToken: csrfTokenFor(token.secret),
    };
  }

  /** Live sessions, oldest first. */
  list(): AdminSessionRecord[] {
    return [...this.#byPrefix.values()].filter((s) => !this.#expired(s)).sort((a, b) =>
      a.id - b.id
    );
  }

  get(id: number): AdminSessionRecord | undefined {
    return [...this.#byPrefix.values()].find((s) => s.id === id);
  }

  /** Ends a session now; false when there is no such live session. */
  async revoke(id: number): Promise<boolean> {
    const s = this.get(id);
    if (!s) return false;
    await this.#store.deleteAdminSession(id);
    this.#byPrefix.delete(s.prefix);
    return !this.#expired(s);
  }
}

interface PendingLink {
  hash: string;
  label: string;
  expiresAt: number;
}

/** One-time sign-in links (`admin signin-link`), hashed, in memory, 10 minutes each. */
export class SigninLinks {
  readonly #links = new Map<string, PendingLink>();
  readonly #now: () => number;

  constructor(opts: { now?: () => number } = {}) {
    this.#now = opts.now ?? Date.now;
  }

  #sweep(): void {
    const now = this.#now();
    for (const [prefix, l] of this.#links) if (l.expiresAt <= now) this.#links.delete(prefix);
  }

  /** A new token for `label` (who the link is for, shown in the audit log). */
  async create(label: string): Promise<{ token: string; expiresAt: Date }> {
    this.#sweep();
    // Bounded: the oldest unused link goes first.
    while (this.#links.size >= MAX_LINKS) this.#links.delete(this.#links.keys().next().value!);
    const token = newToken();
    const expiresAt = this.#now() + SIGNIN_LINK_TTL_MS;
    this.#links.set(token.prefix, { hash: await hashSecret(token.secret), label, expiresAt });
    return { token: token.full, expiresAt: new Date(expiresAt) };
  }

  /** True when `token` names a link that is still unused and valid (nothing is used up). */
  async valid(text: string): Promise<boolean> {
    this.#sweep();
    const token = parseToken(text);
    const link = token ? this.#links.get(token.prefix) : undefined;
    return !!link && await verifySecret(token!.secret, link.hash);
  }

  /** Uses the link up: its label, or null when unknown, wrong, used or expired. */
  async redeem(text: string): Promise<string | null> {
    this.#sweep();
    const token = parseToken(text);
    if (!token) return null;
    const link = this.#links.get(token.prefix);
    if (!link) return null;
    // Taken out before the check, so two requests racing with one token cannot both win.
    this.#links.delete(token.prefix);
    if (!(await verifySecret(token.secret, link.hash))) {
      this.#links.set(token.prefix, link);
      return null;
    }
    return link.label;
  }
}
