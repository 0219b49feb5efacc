/**
 * Signing in to the admin UI, two ways:
 *
 * - a one-time link from the CLI (`headscale-deno admin signin-link`): opening it shows a button;
 *   the POST it sends uses the token up and starts a session. (Not the GET: link previews and
 *   mail scanners fetch links, and must not burn or use them.)
 * - OIDC, through the server's provider (`oidc:`), for the users `admin_ui.oidc` allows. Its own
 *   redirect (`<path>/signin/oidc/callback`) and state, so it never mixes with node logins; the
 *   state is single-use and bound to the browser by a cookie. The admin's identity is the issuer
 *   and subject. With none of the allow-lists set, OIDC admin sign-in is off.
 *
 * Every success and failure is written to the audit log.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import { randomBytes } from "node:crypto";
import type { OidcClient, OidcTransaction } from "../oidc/client.ts";
import { OidcError } from "../oidc/client.ts";
import { authorize, providerIdentifier } from "../oidc/claims.ts";
import { ExpiringMap } from "../auth_requests/expiring_map.ts";
import { type Html, html } from "./html.ts";
import { parseCookies, redirect, sameSecret, securityHeaders } from "./http.ts";
import type { UiDeps } from "./context.ts";
import type { Admin, SigninLinks } from "./sessions.ts";

const FLOW_COOKIE = "headscale_admin_oidc";
const FLOW_TTL_MS = 15 * 60_000;

type Page = (
  req: IncomingMessage,
  res: ServerResponse,
  status: number,
  title: string,
  body: Html,
  cookies?: string[],
) => void;

export interface SigninOptions {
  deps: UiDeps;
  links: SigninLinks;
  oidc: OidcClient | null;
  /** Where a signed-in admin lands. */
  home: string;
  page: Page;
  /** The Set-Cookie value for a new session. */
  sessionCookie(value: string): string;
}

export interface SigninRequest {
  req: IncomingMessage;
  res: ServerResponse;
  method: string;
  /** The path below the base: "/signin", "/signin/link", … */
  rest: string;
  url: URL;
  form: URLSearchParams;
  clientAddr: string;
  admin: Admin | null;
}

interface Flow {
  tx: OidcTransaction;
  browser: string;
  createdAt: number;
}

export class Signin {
  readonly #o: SigninOptions;
  readonly #flows = new ExpiringMap<Flow>({
    ttlMs: FLOW_TTL_MS,
    maxEntries: 1024,
    now: Date.now,
  });
  readonly #oidcOn: boolean;

  constructor(o: SigninOptions) {
    this.#o = o;
    const lists = o.deps.config.adminUi.oidc;
    this.#oidcOn = o.oidc !== null &&
      lists.allowedUsers.length + lists.allowedGroups.length + lists.allowedDomains.length > 0;
  }

  get #base(): string {
    return this.#o.deps.base;
  }

  async handle(r: SigninRequest): Promise<void> {
    const key = `${r.method} ${r.rest}`;
    if (key === "GET /signin") return this.#choose(r);
    if (key === "GET /signin/link") return await this.#linkPage(r);
    if (key === "POST /signin/link") return await this.#redeem(r);
    if (key === "GET /signin/oidc") return await this.#oidcStart(r);
    if (key === "GET /signin/oidc/callback") return await this.#oidcCallback(r);
    this.#o.page(r.req, r.res, 404, "Not found", html`<p>There is no such page.</p>`);
  }

  #choose(r: SigninRequest): void {
    if (r.admin) return redirect(r.res, this.#o.home);
    const signedOut = r.url.searchParams.has("signed-out");
    this.#o.page(
      r.req,
      r.res,
      200,
      "Sign in",
      html`<div class="signin">
${signedOut ? html`<div class="flash ok" role="status">You are signed out.</div>` : ""}
${
        this.#oidcOn
          ? html`
            <p><a class="button primary" href="${this
              .#base}/signin/oidc" id="signin-oidc">Sign in with ${new URL(
              this.#o.deps.config.oidc!.issuer,
            ).host}</a></p>
            <p>Or:</p>
          `
          : ""
      }
<p>On the server, run</p>
<p><code>headscale-deno admin signin-link</code></p>
<p>and open the link it prints (valid for 10 minutes, once).</p>
</div>`,
    );
  }

  async #failed(r: SigninRequest, method: string, reason: string, actor = "anonymous") {
    await this.#o.deps.audit.record({
      actor,
      action: "signin.failed",
      details: { method, reason },
      clientAddr: r.clientAddr,
    });
  }

  #refuse(r: SigninRequest, status: number, message: string, cookies: string[] = []): void {
    this.#o.page(
      r.req,
      r.res,
      status,
      "Sign-in failed",
      html`
        <div class="signin">
          <div class="flash error" role="alert">${message}</div>
          <p><a href="${this.#base}/signin">Back to sign-in</a></p>
        </div>
      `,
      cookies,
    );
  }

  async #linkPage(r: SigninRequest): Promise<void> {
    const token = r.url.searchParams.get("token") ?? "";
    if (!(await this.#o.links.valid(token))) {
      await this.#failed(r, "link", "unknown, used or expired link");
      return this.#refuse(
        r,
        400,
        "This sign-in link is unknown, already used or expired. Run admin signin-link again.",
      );
    }
    this.#o.page(
      r.req,
      r.res,
      200,
      "Sign in",
      html`
        <div class="signin">
          <p>Sign in to the admin UI of <b>${this.#o.deps.config.serverUrl}</b>?</p>
          <form method="post" action="${this.#base}/signin/link" class="stack">
            <input type="hidden" name="token" value="${token}">
            <button type="submit" class="primary" id="signin-link">Sign in</button>
          </form>
          <p class="hint">The link works once. If you did not ask for it, close this page.</p>
        </div>
      `,
    );
  }

  async #redeem(r: SigninRequest): Promise<void> {
    const label = await this.#o.links.redeem(r.form.get("token") ?? "");
    if (label === null) {
      await this.#failed(r, "link", "unknown, used or expired link");
      return this.#refuse(
        r,
        400,
        "This sign-in link is unknown, already used or expired. Run admin signin-link again.",
      );
    }
    await this.#start(r, `link:${label}`, label, { method: "link" });
  }

  /** A session for `identity`: the cookie, the audit event, then the home page. */
  async #start(
    r: SigninRequest,
    identity: string,
    displayName: string,
    details: Record<string, unknown>,
    extraCookies: string[] = [],
  ): Promise<void> {
    const { cookie } = await this.#o.deps.sessions.create({
      identity,
      displayName,
      clientAddr: r.clientAddr,
    });
    await this.#o.deps.audit.record({
      actor: identity,
      action: "signin",
      details,
      clientAddr: r.clientAddr,
    });
    const cookies = [this.#o.sessionCookie(cookie), ...extraCookies];
    if (details.method !== "oidc") return redirect(r.res, this.#o.home, cookies);
    // After the provider's redirects the browser treats a redirect to the UI as cross-site and
    // leaves the SameSite=Strict cookie out; a navigation from our own page carries it.
    this.#o.page(
      r.req,
      r.res,
      200,
      "Signed in",
      html`
        <div class="signin">
          <p>Signed in as <b>${displayName}</b>.</p>
          <p><a class="button primary" href="${this.#o.home}" data-autofollow>Continue</a></p>
        </div>
      `,
      cookies,
    );
  }

  #flowCookie(value: string, maxAgeS: number): string {
    return `${FLOW_COOKIE}=${value}; Path=${this.#base}/signin/oidc/callback; Max-Age=${maxAgeS}; ` +
      // Lax: the provider sends the browser back with a top-level GET from its own site.
      "HttpOnly; Secure; SameSite=Lax";
  }

  async #oidcStart(r: SigninRequest): Promise<void> {
    if (!this.#oidcOn) {
      return this.#refuse(r, 404, "OIDC sign-in to the admin UI is not enabled on this server.");
    }
    const oidc = this.#o.oidc!;
    const tx = oidc.newTransaction({
      redirectUri: `${this.#o.deps.config.serverUrl}${this.#base}/signin/oidc/callback`,
    });
    let url: URL;
    try {
      url = await oidc.authorizationUrl(tx);
    } catch (e) {
      const message = e instanceof OidcError ? e.message : "internal error";
      await this.#failed(r, "oidc", message);
      return this.#refuse(r, 503, `OIDC sign-in failed: ${message}.`);
    }
    const browser = randomBytes(32).toString("hex");
    this.#flows.set(tx.state, { tx, browser, createdAt: Date.now() });
    r.res.writeHead(302, {
      ...securityHeaders(),
      location: url.toString(),
      "cache-control": "no-store",
      "set-cookie": this.#flowCookie(browser, FLOW_TTL_MS / 1000),
    });
    r.res.end();
  }

  async #oidcCallback(r: SigninRequest): Promise<void> {
    const clear = this.#flowCookie("", 0);
    if (!this.#oidcOn) {
      return this.#refuse(r, 404, "OIDC sign-in to the admin UI is not enabled on this server.");
    }
    const params = r.url.searchParams;
    const state = params.get("state") ?? "";
    const flow = state === "" ? undefined : this.#flows.get(state);
    if (flow) this.#flows.delete(state); // single use, whatever happens next
    const cookie = parseCookies(r.req).get(FLOW_COOKIE);
    if (!flow || cookie === undefined || !sameSecret(cookie, flow.browser)) {
      await this.#failed(r, "oidc", flow ? "callback from another browser" : "unknown state");
      return this.#refuse(r, 400, "This sign-in is unknown, expired or from another browser.", [
        clear,
      ]);
    }
    let claims;
    try {
      claims = (await this.#o.oidc!.complete(params, flow.tx)).claims;
    } catch (e) {
      const message = e instanceof OidcError ? e.message : "internal error";
      await this.#failed(r, "oidc", e instanceof OidcError ? e.detail || e.message : String(e));
      return this.#refuse(
        r,
        e instanceof OidcError ? e.status : 500,
        `Sign-in failed: ${message}.`,
        [
          clear,
        ],
      );
    }
    const identity = `oidc:${providerIdentifier(claims.iss, claims.sub)}`;
    const lists = this.#o.deps.config.adminUi.oidc;
    const refusal = authorize({
      ...lists,
      emailVerifiedRequired: this.#o.deps.config.oidc!.emailVerifiedRequired,
    }, claims);
    if (refusal) {
      await this.#failed(r, "oidc", refusal.reason, identity);
      return this.#refuse(r, 403, `You cannot sign in here: ${refusal.message}.`, [clear]);
    }
    const displayName = claims.email || claims.name || claims.preferredUsername || claims.sub;
    await this.#start(r, identity, displayName, { method: "oidc", email: claims.email }, [clear]);
  }
}
