/**
 * The browser's side of an OIDC login, on the main listener:
 *
 * - `start`: from `/register/<id>` (a machine's login) or `/auth/<id>/oidc` (an SSH check), the
 *   browser is sent to the provider with a fresh `state`, `nonce` and (with `oidc.pkce`) code
 *   verifier. They stay here, keyed by the state, bound to the auth request's id and to the
 *   browser: a random value in a cookie only `/oidc/callback` receives (HttpOnly, SameSite=Lax,
 *   Secure with an https server_url). At most 1,024 logins in flight; each expires after 15
 *   minutes, as headscale's cache.
 * - `callback` (`/oidc/callback`): the state is taken out at once (single use: a replayed callback
 *   finds nothing), the cookie must match, the auth request must still wait, the library checks
 *   the code exchange, the ID token (signature, issuer, audience, expiry, nonce) and PKCE; then
 *   the allow-lists; then the user (issuer + subject) is found or created. An SSH check is
 *   approved when that user owns the connecting node. A machine is not registered yet: the page
 *   names the machine and the user and asks to confirm (as headscale v0.29), so a login link
 *   someone else sent cannot register their machine to you behind a silent provider login.
 * - `confirm` (`POST /oidc/confirm`): the form's one-time token and a second cookie
 *   (SameSite=Strict, only this path) must match; then the machine is registered.
 *
 * Every refusal is a page saying why and one log line without codes, tokens or secrets.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import { timingSafeEqual } from "node:crypto";
import type { OidcConfig } from "../config/config.ts";
import type { Logger } from "../log/log.ts";
import type { NodeRecord, UserRecord } from "../store/types.ts";
import { ExpiringMap } from "../auth_requests/expiring_map.ts";
import { escapeHtml, page } from "../control/register_page.ts";
import { authorize, type OidcClaims } from "./claims.ts";
import { type OidcClient, OidcError, type OidcTransaction } from "./client.ts";

export type OidcPurpose = "register" | "ssh-check";

export interface OidcWebDeps {
  client: OidcClient;
  config: OidcConfig;
  serverUrl: string;
  log: Logger;
  /** Finds or creates the user of these claims (State.upsertOidcUser). */
  upsertUser(claims: OidcClaims): Promise<UserRecord>;
  /** True while the auth request `id` of that purpose waits for a decision. */
  isPending(purpose: OidcPurpose, id: string): boolean;
  /** Registers the waiting machine to the user (a re-login keeps its node). */
  register(id: string, userId: number, tokenExpiry: Date | null): Promise<NodeRecord>;
  /** The SSH check's source node id, undefined when no such check waits. */
  sshCheckSource(id: string): number | undefined;
  getNode(id: number): NodeRecord | undefined;
  /** Approves the SSH check (as `auth approve`). */
  approveSshCheck(id: string): Promise<void>;
  /** The hostname the waiting machine reported, for the confirmation page. */
  machineName?(id: string): string | undefined;
  now?: () => number;
}

interface Flow {
  purpose: OidcPurpose;
  authId: string;
  tx: OidcTransaction;
  /** The value of the browser's cookie. */
  browser: string;
  createdAt: number;
}

/** A registration the browser has to confirm: who, for which machine, bound to that browser. */
interface Confirmation {
  authId: string;
  user: UserRecord;
  expiry: Date | null;
  browser: string;
  who: Record<string, unknown>;
  createdAt: number;
}

const COOKIE_PREFIX = "headscale_oidc_";
const CONFIRM_COOKIE = "headscale_oidc_confirm";
const MAX_FORM_BYTES = 4096;
const FLOW_TTL_MS = 15 * 60_000;

/** The cookie's name for a state: one per login in flight, so parallel logins do not clash. */
function cookieName(state: string): string {
  return COOKIE_PREFIX + state.slice(0, 12).replace(/[^A-Za-z0-9_-]/g, "");
}

function cookies(req: IncomingMessage): Map<string, string> {
  const out = new Map<string, string>();
  for (const part of (req.headers.cookie ?? "").split(";")) {
    const eq = part.indexOf("=");
    if (eq > 0) out.set(part.slice(0, eq).trim(), part.slice(eq + 1).trim());
  }
  return out;
}

function sameSecret(a: string, b: string): boolean {
  const x = new TextEncoder().encode(a);
  const y = new TextEncoder().encode(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

function randomToken(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(32));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

export class OidcWeb {
  readonly #flows: ExpiringMap<Flow>;
  readonly #confirmations: ExpiringMap<Confirmation>;
  readonly #now: () => number;
  readonly #secure: boolean;

  constructor(private readonly deps: OidcWebDeps) {
    this.#now = deps.now ?? Date.now;
    this.#flows = new ExpiringMap({ ttlMs: FLOW_TTL_MS, maxEntries: 1024, now: this.#now });
    this.#confirmations = new ExpiringMap({
      ttlMs: FLOW_TTL_MS,
      maxEntries: 1024,
      now: this.#now,
    });
    this.#secure = deps.serverUrl.startsWith("https://");
  }

  /** Sends the browser to the provider for auth request `authId` (the caller checked it waits). */
  async start(
    req: IncomingMessage,
    res: ServerResponse,
    purpose: OidcPurpose,
    authId: string,
  ): Promise<void> {
    const tx = this.deps.client.newTransaction();
    let url: URL;
    try {
      url = await this.deps.client.authorizationUrl(tx);
    } catch (e) {
      return this.#fail(req, res, e, { auth_id: authId });
    }
    const browser = randomToken();
    this.#flows.set(tx.state, { purpose, authId, tx, browser, createdAt: this.#now() });
    res.writeHead(302, {
      location: url.toString(),
      // Lax: the provider sends the browser back with a top-level GET from its own site.
      "set-cookie": this.#cookie(cookieName(tx.state), browser, "/oidc/callback", "Lax"),
      "cache-control": "no-store",
    });
    res.end();
  }

  /** `GET /oidc/callback?code=…&state=…`. */
  callback(req: IncomingMessage, res: ServerResponse): void {
    this.#callback(req, res).catch((e) => this.#fail(req, res, e, {}));
  }

  async #callback(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const params = new URL(req.url ?? "/", "http://callback").searchParams;
    const state = params.get("state") ?? "";
    const flow = state === "" ? undefined : this.#flows.get(state);
    // Single use: whatever happens next, this state is spent.
    if (flow) this.#flows.delete(state);
    const clear = `${cookieName(state)}=; Path=/oidc/callback; Max-Age=0; HttpOnly; SameSite=Lax`;
    if (!flow) {
      return this.#refuse(req, res, 400, "This login link is unknown, already used or expired.", {
        event: "OIDC callback with an unknown, used or expired state",
      }, clear);
    }
    const ctx = { auth_id: flow.authId, purpose: flow.purpose };
    const cookie = cookies(req).get(cookieName(state));
    if (cookie === undefined || !sameSecret(cookie, flow.browser)) {
      return this.#refuse(
        req,
        res,
        403,
        "This login was started in another browser. Open the login link again here.",
        { ...ctx, event: "OIDC callback without the browser's login cookie" },
        clear,
      );
    }
    if (!this.deps.isPending(flow.purpose, flow.authId)) {
      return this.#refuse(
        req,
        res,
        410,
        flow.purpose === "register"
          ? "This registration expired or was already decided. Run tailscale up again."
          : "This SSH check expired or was already decided. Connect again.",
        { ...ctx, event: "OIDC callback for an auth request that no longer waits" },
        clear,
      );
    }
    let identity;
    try {
      identity = await this.deps.client.complete(params, flow.tx);
    } catch (e) {
      return this.#fail(req, res, e, ctx, clear);
    }
    const { claims } = identity;
    const who = { ...ctx, iss: claims.iss, sub: claims.sub };
    const refusal = authorize(this.deps.config, claims);
    if (refusal) {
      return this.#refuse(req, res, 403, `You cannot log in here: ${refusal.message}.`, {
        ...who,
        event: "OIDC login refused by the allow-lists",
        reason: refusal.reason,
      }, clear);
    }
    const user = await this.deps.upsertUser(claims);
    if (flow.purpose === "register") {
      const expiry = this.deps.config.useExpiryFromToken ? identity.tokenExpiry : null;
      const token = randomToken();
      const browser = randomToken();
      this.#confirmations.set(token, {
        authId: flow.authId,
        user,
        expiry,
        browser,
        who,
        createdAt: this.#now(),
      });
      const machine = this.deps.machineName?.(flow.authId) || "a machine";
      this.deps.log.info("OIDC login waits for the browser to confirm the registration", {
        ...who,
        user: user.name,
      });
      return this.#send(
        req,
        res,
        200,
        "Confirm the registration",
        `<h1>Register this machine?</h1>
<p>Register <b>${escapeHtml(machine)}</b> to <b>${
          escapeHtml(user.displayName || user.name)
        }</b>? Only confirm if you ran <code>tailscale up</code> on that machine yourself.</p>
<form method="post" action="/oidc/confirm">
<input type="hidden" name="token" value="${token}">
<button type="submit">Register ${escapeHtml(machine)}</button>
</form>
<p>Not you? Close this window; nothing is registered.</p>`,
        [clear, this.#cookie(CONFIRM_COOKIE, browser, "/oidc/confirm", "Strict")],
      );
    }
    // An SSH check: only the owner of the connecting node may vouch for it (as headscale).
    const src = this.deps.sshCheckSource(flow.authId);
    const srcNode = src === undefined ? undefined : this.deps.getNode(src);
    if (!srcNode || srcNode.tags.length > 0 || srcNode.userId !== user.id) {
      return this.#refuse(
        req,
        res,
        403,
        "You are not the owner of the machine this SSH connection comes from.",
        { ...who, event: "OIDC SSH check refused: not the source node's owner", src },
        clear,
      );
    }
    await this.deps.approveSshCheck(flow.authId);
    this.deps.log.info("OIDC login approved an SSH check", { ...who, user: user.name, src });
    this.#send(
      req,
      res,
      200,
      "SSH session authorized",
      `<h1>SSH session authorized</h1>
<p>Authorized as <b>${escapeHtml(user.displayName || user.name)}</b>. You may return to your
terminal.</p>`,
      clear,
    );
  }

  /** A login cookie: only for `path`, not for scripts, for as long as a login may take. */
  #cookie(name: string, value: string, path: string, sameSite: "Lax" | "Strict"): string {
    const attrs = [`Path=${path}`, `Max-Age=${FLOW_TTL_MS / 1000}`, "HttpOnly"];
    attrs.push(`SameSite=${sameSite}`, ...(this.#secure ? ["Secure"] : []));
    return `${name}=${value}; ${attrs.join("; ")}`;
  }

  /** `POST /oidc/confirm` from the confirmation page: registers the machine. */
  confirm(req: IncomingMessage, res: ServerResponse): void {
    this.#confirm(req, res).catch((e) => this.#fail(req, res, e, {}));
  }

  async #confirm(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const clear = `${CONFIRM_COOKIE}=; Path=/oidc/confirm; Max-Age=0; HttpOnly; SameSite=Strict`;
    const form = await readForm(req);
    const token = form?.get("token") ?? "";
    const pending = token === "" ? undefined : this.#confirmations.get(token);
    // Single use, whatever happens next.
    if (pending) this.#confirmations.delete(token);
    if (!pending) {
      return this.#refuse(req, res, 400, "This confirmation is unknown, already used or expired.", {
        event: "OIDC confirmation with an unknown, used or expired token",
      }, clear);
    }
    const { who } = pending;
    const cookie = cookies(req).get(CONFIRM_COOKIE);
    if (cookie === undefined || !sameSecret(cookie, pending.browser)) {
      return this.#refuse(
        req,
        res,
        403,
        "This confirmation was not sent from the browser that logged in.",
        { ...who, event: "OIDC confirmation without the browser's cookie" },
        clear,
      );
    }
    if (!this.deps.isPending("register", pending.authId)) {
      return this.#refuse(
        req,
        res,
        410,
        "This registration expired or was already decided. Run tailscale up again.",
        { ...who, event: "OIDC confirmation for an auth request that no longer waits" },
        clear,
      );
    }
    let node: NodeRecord;
    try {
      node = await this.deps.register(pending.authId, pending.user.id, pending.expiry);
    } catch (e) {
      return this.#refuse(
        req,
        res,
        400,
        `The machine could not be registered: ${(e as Error).message}`,
        { ...who, event: "OIDC registration failed", error: (e as Error).message },
        clear,
      );
    }
    const user = pending.user;
    this.deps.log.info("OIDC login registered a node", { ...who, user: user.name, node: node.id });
    this.#send(
      req,
      res,
      200,
      "Machine registered",
      `<h1>Machine registered</h1>
<p>The machine <b>${escapeHtml(node.hostname)}</b> is now registered to
<b>${escapeHtml(user.displayName || user.name)}</b>. You can close this window.</p>`,
      clear,
    );
  }

  #fail(
    req: IncomingMessage,
    res: ServerResponse,
    e: unknown,
    ctx: Record<string, unknown>,
    clear?: string,
  ): void {
    if (e instanceof OidcError) {
      return this.#refuse(req, res, e.status, `The login failed: ${e.message}.`, {
        ...ctx,
        event: "OIDC login failed",
        error: e.detail || e.message,
      }, clear);
    }
    this.deps.log.error("OIDC login failed", { ...ctx, error: e });
    this.#send(req, res, 500, "Login failed", "<h1>Login failed</h1><p>Internal error.</p>", clear);
  }

  #refuse(
    req: IncomingMessage,
    res: ServerResponse,
    status: number,
    message: string,
    fields: Record<string, unknown> & { event: string },
    clear?: string,
  ): void {
    const { event, ...rest } = fields;
    this.deps.log.warn(event, { ...rest, status });
    this.#send(
      req,
      res,
      status,
      "Login refused",
      `<h1>Login refused</h1>\n<p>${escapeHtml(message)}</p>`,
      clear,
    );
  }

  #send(
    req: IncomingMessage,
    res: ServerResponse,
    status: number,
    title: string,
    body: string,
    cookies?: string | string[],
  ): void {
    if (res.headersSent) return void res.end();
    res.writeHead(status, {
      "content-type": "text/html; charset=utf-8",
      "cache-control": "no-store",
      "x-content-type-options": "nosniff",
      "content-security-policy": "default-src 'none'; style-src 'unsafe-inline'; " +
        "form-action 'self'; frame-ancestors 'none'",
      ...(cookies ? { "set-cookie": cookies } : {}),
    });
    res.end(req.method === "HEAD" ? undefined : page(title, body));
  }
}

/** The urlencoded form of a small POST body; null when it is too large or not a form. */
function readForm(req: IncomingMessage): Promise<URLSearchParams | null> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on("data", (c: Buffer) => {
      size += c.length;
      if (size > MAX_FORM_BYTES) {
        req.removeAllListeners("data");
        resolve(null);
        return;
      }
      chunks.push(c);
    });
    req.on("end", () => resolve(new URLSearchParams(Buffer.concat(chunks).toString("utf8"))));
    req.on("error", () => resolve(null));
  });
}
