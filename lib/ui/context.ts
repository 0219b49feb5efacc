/**
 * How a page module plugs into the admin UI (see docs/ui.md, "Adding a page"): a factory gets
 * the UI's dependencies and returns its routes, an optional nav entry and optional live
 * updates; every handler gets a UiContext with the signed-in admin, the CSRF-checked form and
 * helpers to render, redirect and record changes in the audit log.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Config } from "../config/config.ts";
import type { Logger } from "../log/log.ts";
import type { State } from "../state/state.ts";
import type { Change } from "../state/events.ts";
import type { AuthRequests } from "../auth_requests/registry.ts";
import type { PolicyManager } from "../policy_manager/manager.ts";
import type { TailnetMetricsSources } from "../metrics/tailnet.ts";
import type { Store } from "../store/types.ts";
import type { Html } from "./html.ts";
import type { InProcessApi } from "./api.ts";
import type { AuditLog } from "./audit.ts";
import type { Admin, AdminSessions } from "./sessions.ts";
import type { HealthPageSources } from "./health_page.ts";

/** What pages may use; server.ts passes it in (add a field here and there if a page needs more). */
export interface UiDeps {
  config: Config;
  /** The UI's path, e.g. "/admin" (admin_ui.path). */
  base: string;
  state: State;
  /** HeadscaleService in-process: every change goes through it (lib/ui/api.ts). */
  api: InProcessApi;
  authRequests: AuthRequests;
  policy: PolicyManager;
  /** What /metrics reads: nodes online, map sessions, DERP, counters. */
  metrics: TailnetMetricsSources;
  database: Pick<Store, "kind" | "ping" | "checkWritable">;
  audit: AuditLog;
  sessions: AdminSessions;
  /** The Health page's sampler (charts) and DERP map. */
  health: HealthPageSources;
  log: Logger;
  now: () => Date;
}

/** One message shown once on the next page (after a redirect). */
export interface Flash {
  kind: "ok" | "error" | "warn";
  text: string;
}

/** A table row to send to the open pages: replaces `<tr data-row-key=key>` in `<tbody id=target>`. */
export interface RowEvent {
  target: string;
  key: string;
  /** The new `<tr …>`; omitted with `remove`. */
  html?: string;
  remove?: boolean;
}

export interface PerformSpec {
  /** e.g. "node.rename" */
  action: string;
  /** e.g. "node:12" */
  target: string;
  /** What was asked, without secrets. */
  details?: Record<string, unknown>;
}

export type Outcome<T> = { ok: true; value: T } | { ok: false; error: string };

export interface UiContext {
  req: IncomingMessage;
  res: ServerResponse;
  admin: Admin;
  /** The client's address after trusted_proxies. */
  clientAddr: string;
  url: URL;
  /** The POST form (its CSRF token already checked); empty for GET. */
  form: URLSearchParams;
  deps: UiDeps;
  /** A path below the UI's base: href("/machines") → "/admin/machines". */
  href(path: string): string;
  /** A hidden input with the session's CSRF token: put it in every POST form. */
  csrfField(): Html;
  /** `<form method="post" action="<base><path>">` with the CSRF field and `body`. */
  postForm(path: string, body: Html, opts?: { class?: string; label?: string }): Html;
  /** Sends a page in the layout (status 200 unless given). `live`: the page listens to /events. */
  render(opts: { title: string; body: Html; status?: number; live?: boolean }): void;
  /** 303 to a path below the base, with a message for the next page. */
  redirect(path: string, flash?: Flash): void;
  /**
   * Runs a change and writes the audit event either way (with the error when it failed). The
   * error is the API's message, ready to show.
   */
  perform<T>(spec: PerformSpec, fn: () => Promise<T>): Promise<Outcome<T>>;
  /** Writes an audit event for something that is not a call (e.g. viewing a secret once). */
  audit(spec: PerformSpec): Promise<void>;
}

export interface UiRoute {
  method: "GET" | "POST";
  /** Below the base, exact: "/machines", "/machines/rename". */
  path: string;
  handler(ctx: UiContext): void | Promise<void>;
}

export interface UiPage {
  /** Its entry in the top navigation (order: lower first). */
  nav?: { label: string; path: string; order: number };
  routes: UiRoute[];
  /** Called with every batch of tailnet changes; push rows to the pages open in browsers. */
  onChanges?(changes: readonly Change[], push: (e: RowEvent) => void): void;
  close?(): void;
}

export type PageFactory = (deps: UiDeps) => UiPage;
