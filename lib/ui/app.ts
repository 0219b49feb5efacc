/**
 * The admin web UI under `admin_ui.path` on the main listener: one request handler that checks,
 * in this order, the client address (`admin_ui.allowed_ips`, else 404), that a POST comes from
 * this site (Origin, Sec-Fetch-Site), the session cookie, and the POST's CSRF token; then hands
 * the request to a page module's route (pages.ts lists them). Also serves the assets, the
 * Server-Sent Events open pages listen to, sign-in and sign-out.
 *
 * Created by server.ts with its dependencies; holds only per-instance state (flash messages,
 * event listeners), nothing at module level.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Change } from "../state/events.ts";
import type { OidcClient } from "../oidc/client.ts";
import { clientAddress } from "../net/client_addr.ts";
import { parseIP, parsePrefix, type Prefix, prefixContains } from "../net/ip.ts";
import { type Html, html } from "./html.ts";
import { createAssets } from "./assets/mod.ts";
import { layout, type NavEntry } from "./layout.ts";
import {
  FormTooLargeError,
  parseCookies,
  readForm,
  redirect,
  sameSecret,
  securityHeaders,
  sendHtml,
  sendPlain,
} from "./http.ts";
import type {
  Flash,
  Outcome,
  PageFactory,
  PerformSpec,
  RowEvent,
  UiContext,
  UiDeps,
  UiPage,
  UiRoute,
} from "./context.ts";
import { type Admin, SigninLinks } from "./sessions.ts";
import { Signin } from "./signin.ts";
import { errorMessage } from "./api.ts";
import type { AdminSessionRecord, AuditEventRecord } from "../store/types.ts";

export const SESSION_COOKIE = "headscale_admin";
const MAX_EVENT_CLIENTS = 200;

export interface AdminUiOptions {
  deps: UiDeps;
  pages: PageFactory[];
  oidc: OidcClient | null;
}

/** What the API's admin calls (`admin signin-link`, sessions, `audit list`) reach. */
export interface AdminUiControl {
  /** A one-time sign-in link for `label` (default "admin"). */
  createSigninLink(label: string): Promise<{ url: string; expiresAt: Date }>;
  listSessions(): AdminSessionRecord[];
  /** False when no such live session. */
  revokeSession(id: number): Promise<boolean>;
  listAudit(limit: number): Promise<AuditEventRecord[]>;
}

export interface AdminUi {
  /** For the router: every request whose path is the base or below it. */
  handle(req: IncomingMessage, res: ServerResponse): Promise<void>;
  /** server.ts's State subscription feeds this. */
  onChanges(changes: readonly Change[]): void;
  control: AdminUiControl;
  close(): void;
}

export async function createAdminUi(opts: AdminUiOptions): Promise<AdminUi> {
  const { deps } = opts;
  const { base, config } = deps;
  const assets = createAssets(base);
  const allowed: Prefix[] = config.adminUi.allowedIps.map((p) => parsePrefix(p)!).filter(Boolean);
  const pages: UiPage[] = opts.pages.map((make) => make(deps));
  const routes = new Map<string, UiRoute>();
  for (const p of pages) {
    for (const r of p.routes) routes.set(`${r.method} ${r.path}`, r);
  }
  const nav: NavEntry[] = pages.flatMap((p) => p.nav ? [p.nav] : [])
    .sort((a, b) => a.order - b.order)
    .map((n) => ({ label: n.label, href: base + n.path }));
  const home = nav[0]?.href ?? `${base}/sessions`;
  const flashes = new Map<number, Flash>();
  const links = new SigninLinks();
  await deps.sessions.load();

  // ---- live updates (Server-Sent Events) ----------------------------------------------------
  const listeners = new Set<ServerResponse>();
  const heartbeatMs = Math.max(1_000, Math.min(15_000, config.tuning.httpRequestTimeoutMs / 3));
  const heartbeat = setInterval(() => {
    for (const res of listeners) res.write(": keep-alive\n\n");
  }, heartbeatMs);
  const push = (e: RowEvent) => {
    const frame = `event: row\ndata: ${JSON.stringify(e)}\n\n`;
    for (const res of listeners) res.write(frame);
  };

  const publicPage = (
    req: IncomingMessage,
    res: ServerResponse,
    status: number,
    title: string,
    body: Html,
    cookies: string[] = [],
  ) => {
    const path = new URL(req.url ?? "/", "http://x").pathname;
    sendHtml(req, res, status, layout({ title, body, assets, base, nav, path }), cookies);
  };

  const secureCookie = (value: string, maxAgeS: number) =>
    `${SESSION_COOKIE}=${value}; Path=${base}; Max-Age=${maxAgeS}; HttpOnly; Secure; ` +
    "SameSite=Strict";

  const signin = new Signin({
    deps,
    links,
    oidc: opts.oidc,
    home,
    page: publicPage,
    sessionCookie: (value) =>
      secureCookie(value, Math.floor(config.adminUi.sessionDurationMs / 1000)),
  });

  /** Same-site requests only: a POST from another site is refused before anything else. */
  const fromThisSite = (req: IncomingMessage): boolean => {
    const site = req.headers["sec-fetch-site"];
    if (site !== undefined && site !== "same-origin") return false;
    const origin = req.headers.origin;
    if (origin === undefined) return true;
    let o: URL;
    try {
      o = new URL(origin);
    } catch {
      return false; // "null" and garbage
    }
    const serverOrigin = new URL(config.serverUrl).origin;
    return o.origin === serverOrigin || o.host === req.headers.host;
  };

  const ipAllowed = (addr: string): boolean => {
    if (allowed.length === 0) return true;
    const ip = parseIP(addr);
    return ip !== null && allowed.some((p) => prefixContains(p, ip));
  };

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? "/", "http://ui.invalid");
    const method = req.method === "HEAD" ? "GET" : req.method ?? "GET";
    const clientAddr = clientAddress(req);
    if (!ipAllowed(clientAddr)) return sendPlain(res, 404, "not found\n");
    const rest = url.pathname.slice(base.length);
    if (rest === "") return redirect(res, `${base}/`);
    if (method === "GET" && rest.startsWith("/assets/")) {
      const a = assets.find(rest.slice("/assets/".length));
      if (!a) return sendPlain(res, 404, "not found\n");
      res.writeHead(200, {
        ...securityHeaders(),
        "content-type": a.contentType,
        "cache-control": "public, max-age=31536000, immutable",
      });
      return void res.end(req.method === "HEAD" ? undefined : a.body);
    }
    if (method !== "GET" && method !== "POST") return sendPlain(res, 405, "method not allowed\n");
    if (method === "POST" && !fromThisSite(req)) {
      await deps.audit.record({
        actor: "anonymous",
        action: "request.refused",
        target: rest,
        details: { reason: "cross-site POST" },
        clientAddr,
      });
      return sendPlain(res, 403, "cross-site request refused\n");
    }
    let form = new URLSearchParams();
    if (method === "POST") {
      try {
        form = await readForm(req);
      } catch (e) {
        if (e instanceof FormTooLargeError) return sendPlain(res, 413, `${e.message}\n`);
        throw e;
      }
    }
    const cookie = parseCookies(req).get(SESSION_COOKIE) ?? "";
    const admin = cookie === "" ? null : await deps.sessions.check(cookie);

    if (rest === "/signin" || rest.startsWith("/signin/")) {
      return await signin.handle({ req, res, method, rest, url, form, clientAddr, admin });
    }
    if (!admin) {
      if (method === "GET" && rest !== "/events") {
        return redirect(res, `${base}/signin`, cookie ? [secureCookie("", 0)] : []);
      }
      return sendPlain(res, 403, "not signed in\n");
    }
    if (method === "POST" && !sameSecret(form.get("csrf") ?? "", admin.csrfToken)) {
      await deps.audit.record({
        actor: admin.identity,
        action: "request.refused",
        target: rest,
        details: { reason: "missing or wrong CSRF token" },
        clientAddr,
      });
      return sendPlain(res, 403, "missing or wrong CSRF token\n");
    }
    if (rest === "/") return redirect(res, home);
    if (rest === "/signout" && method === "POST") {
      await deps.sessions.revoke(admin.sessionId);
      await deps.audit.record({ actor: admin.identity, action: "signout", clientAddr });
      return redirect(res, `${base}/signin?signed-out=1`, [secureCookie("", 0)]);
    }
    if (rest === "/events" && method === "GET") return openEvents(req, res);
    const route = routes.get(`${method} ${rest}`);
    if (!route) return sendPlain(res, 404, "not found\n");
    await route.handler(context(req, res, url, form, admin, clientAddr));
  }

  function openEvents(req: IncomingMessage, res: ServerResponse): void {
    if (listeners.size >= MAX_EVENT_CLIENTS) return sendPlain(res, 503, "too many listeners\n");
    res.writeHead(200, {
      ...securityHeaders(),
      "content-type": "text/event-stream; charset=utf-8",
      "cache-control": "no-store",
      "x-accel-buffering": "no",
    });
    res.write("retry: 2000\n\n");
    listeners.add(res);
    const drop = () => listeners.delete(res);
    req.on("close", drop);
    res.on("close", drop);
  }

  function context(
    req: IncomingMessage,
    res: ServerResponse,
    url: URL,
    form: URLSearchParams,
    admin: Admin,
    clientAddr: string,
  ): UiContext {
    const href = (path: string) => base + path;
    const csrfField = () => html`<input type="hidden" name="csrf" value="${admin.csrfToken}">`;
    const audit = async (spec: PerformSpec, error?: string) => {
      await deps.audit.record({
        actor: admin.identity,
        action: spec.action,
        target: spec.target,
        details: { ...spec.details, ...(error !== undefined ? { error } : {}) },
        clientAddr,
      });
    };
    return {
      req,
      res,
      admin,
      clientAddr,
      url,
      form,
      deps,
      href,
      csrfField,
      postForm(path, body, o = {}) {
        return html`
          <form method="post" action="${href(path)}" class="${o.class ?? "inline"}"
            ${o.label
              ? html`
                aria-label="${o.label}"
              `
              : ""}>${csrfField()}${body}</form>
        `;
      },
      render({ title, body, status = 200, live = false }) {
        const flash = flashes.get(admin.sessionId);
        flashes.delete(admin.sessionId);
        sendHtml(
          req,
          res,
          status,
          layout({
            title,
            body,
            assets,
            base,
            nav,
            path: url.pathname,
            flash,
            admin: { displayName: admin.displayName, csrfToken: admin.csrfToken },
            events: live ? href("/events") : undefined,
          }),
        );
      },
      redirect(path, flash) {
        if (flash) flashes.set(admin.sessionId, flash);
        redirect(res, href(path));
      },
      async perform<T>(spec: PerformSpec, fn: () => Promise<T>): Promise<Outcome<T>> {
        try {
          const value = await fn();
          await audit(spec);
          return { ok: true, value };
        } catch (e) {
          const error = errorMessage(e);
          await audit(spec, error);
          return { ok: false, error };
        }
      },
      audit: (spec) => audit(spec),
    };
  }

  const control: AdminUiControl = {
    async createSigninLink(label) {
      const { token, expiresAt } = await links.create(label || "admin");
      const url = `${config.serverUrl}${base}/signin/link?token=${token}`;
      return { url, expiresAt };
    },
    listSessions: () => deps.sessions.list(),
    revokeSession: (id) => deps.sessions.revoke(id),
    listAudit: (limit) => deps.audit.list(limit),
  };

  return {
    async handle(req, res) {
      try {
        await handle(req, res);
      } catch (e) {
        deps.log.error("admin UI request failed", { path: req.url, error: e });
        if (!res.headersSent) sendPlain(res, 500, "internal error\n");
        else res.end();
      }
    },
    onChanges(changes) {
      if (listeners.size === 0) return;
      for (const p of pages) p.onChanges?.(changes, push);
    },
    control,
    close() {
      clearInterval(heartbeat);
      for (const res of listeners) res.end();
      listeners.clear();
      for (const p of pages) p.close?.();
    },
  };
}
