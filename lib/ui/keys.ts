/**
 * Keys: pre-auth keys (create for a user or for tags only, reusable, ephemeral, with an expiry;
 * list, expire, delete) and API keys (create, list, expire, delete). A new key is shown once, on
 * the page the creating POST answers (never in a URL, never stored in the clear), with a copyable
 * `tailscale up` line; the audit log names it by id and prefix only.
 */
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { type Html, html } from "./html.ts";
import type { PageFactory, UiContext, UiDeps } from "./context.ts";
import type { ApiKeyRecord, PreAuthKeyRecord } from "../store/types.ts";
import { maskedKey } from "../auth/secrets.ts";
import { emptyRow, time } from "./format.ts";

/** The lifetimes offered, as the CLI's --expiration takes them. */
const LIFETIMES: [string, number][] = [
  ["1 hour", 3600_000],
  ["1 day", 86400_000],
  ["7 days", 7 * 86400_000],
  ["30 days", 30 * 86400_000],
  ["90 days", 90 * 86400_000],
  ["1 year", 365 * 86400_000],
];

function lifetimeSelect(id: string, preselect: number): Html {
  return html`<select id="${id}" name="lifetime">${
    LIFETIMES.map(([label, ms]) =>
      html`
        <option value="${ms}" ${ms === preselect ? " selected" : ""}>${label}</option>
      `
    )
  }</select>`;
}

function lifetimeFrom(ctx: UiContext): number {
  const ms = Number(ctx.form.get("lifetime"));
  return LIFETIMES.some(([, v]) => v === ms) ? ms : 3600_000;
}

function expiryBadge(deps: UiDeps, d: Date | null): Html {
  if (!d) return html`<span class="muted">never</span>`;
  return d.getTime() <= deps.now().getTime()
    ? html`<span class="badge bad">expired</span> ${time(d)}`
    : time(d);
}

function yes(b: boolean): Html {
  return b ? html`<span class="badge">yes</span>` : html`<span class="muted">no</span>`;
}

function preAuthRow(ctx: UiContext, k: PreAuthKeyRecord): Html {
  const { deps } = ctx;
  const user = k.userId === null ? undefined : deps.state.getUser(k.userId);
  const idField = html`<input type="hidden" name="id" value="${k.id}">`;
  return html`
    <tr data-row-key="${k.id}" data-key-id="${k.id}">
      <td>${k.id}</td>
      <td><code>${maskedKey("auth", k.prefix)}</code></td>
      <td>${user ? user.name : html`<span class="muted">—</span>`}</td>
      <td>${k.tags.map((t) =>
        html`
          <span class="badge">${t}</span>
        `
      )}</td>
      <td>${yes(k.reusable)}</td>
      <td>${yes(k.ephemeral)}</td>
      <td>${yes(k.used)}</td>
      <td class="nowrap">${expiryBadge(deps, k.expiration)}</td>
      <td class="nowrap">${time(k.createdAt)}</td>
      <td>${ctx.postForm(
        "/keys/preauth/expire",
        html`${idField}<button type="submit">Expire</button>`,
      )}
    ${ctx.postForm(
      "/keys/preauth/delete",
      html`${idField}<button type="submit" class="danger">Delete</button>`,
    )}</td>
    </tr>
  `;
}

function apiKeyRow(ctx: UiContext, k: ApiKeyRecord): Html {
  const idField = html`<input type="hidden" name="id" value="${k.id}">`;
  return html`
    <tr data-row-key="${k.id}" data-api-key-id="${k.id}">
      <td>${k.id}</td>
      <td><code>${maskedKey("api", k.prefix)}</code></td>
      <td class="nowrap">${expiryBadge(ctx.deps, k.expiration)}</td>
      <td class="nowrap">${time(k.lastSeen, "never")}</td>
      <td class="nowrap">${time(k.createdAt)}</td>
      <td>${ctx.postForm("/keys/api/expire", html`${idField}<button type="submit">Expire</button>`)}
    ${ctx.postForm(
      "/keys/api/delete",
      html`${idField}<button type="submit" class="danger">Delete</button>`,
    )}</td>
    </tr>
  `;
}

/** A secret shown once, with a copy button. */
function secretBox(id: string, text: string, label: string): Html {
  return html`<div class="secret"><span class="hint">${label}</span><code id="${id}">${text}</code>
<button type="button" data-copy="${id}">Copy</button></div>`;
}

function listPage(ctx: UiContext): Html {
  const { deps } = ctx;
  const users = deps.state.listUsers();
  const keys = deps.state.listPreAuthKeys();
  const apiKeys = deps.state.listApiKeys();
  return html`
    <h2 id="preauth">Pre-auth keys</h2>
    <div class="table-wrap">
      <table>
        <thead>
          <tr>
            <th scope="col">ID</th>
            <th scope="col">Key</th>
            <th scope="col">User</th>
            <th scope="col">Tags</th>
            <th scope="col">Reusable</th>
            <th scope="col">Ephemeral</th>
            <th scope="col">Used</th>
            <th scope="col">Expires</th>
            <th scope="col">Created</th>
            <th scope="col">Actions</th>
          </tr>
        </thead>
        <tbody id="preauth-keys">${keys.length
          ? keys.map((k) => preAuthRow(ctx, k))
          : emptyRow(10, "No pre-auth keys.")}</tbody>
      </table>
    </div>
    <h3>Create a pre-auth key</h3>
    ${ctx.postForm(
      "/keys/preauth/create",
      html`
        <div class="field"><label for="key-user">User</label>
        <select id="key-user" name="user"><option value="0">none: tagged nodes only</option>${users
          .map((u) => html`<option value="${u.id}">${u.name}</option>`)}</select></div>
        <div
          class="field"><label for="key-tags">Tags <span class="hint">(comma-separated, e.g. tag:server)</span></label>
        <input id="key-tags" name="tags" autocomplete="off"></div>
        <div
          class="check"><input type="checkbox" id="key-reusable" name="reusable" value="yes"><label for="key-reusable">Reusable (many machines)</label></div>
        <div
          class="check"><input type="checkbox" id="key-ephemeral" name="ephemeral" value="yes"><label for="key-ephemeral">Ephemeral (removed when offline)</label></div>
        <div class="field"><label for="key-lifetime">Expires after</label>${lifetimeSelect(
          "key-lifetime",
          3600_000,
        )}</div>
        <div><button type="submit" class="primary" id="create-preauth-key">Create pre-auth key</button></div>
      `,
      { class: "stack" },
    )}
    <h2 id="api">API keys</h2>
    <div class="table-wrap">
      <table>
        <thead>
          <tr>
            <th scope="col">ID</th>
            <th scope="col">Key</th>
            <th scope="col">Expires</th>
            <th scope="col">Last used</th>
            <th scope="col">Created</th>
            <th scope="col">Actions</th>
          </tr>
        </thead>
        <tbody id="api-keys">${apiKeys.length
          ? apiKeys.map((k) => apiKeyRow(ctx, k))
          : emptyRow(6, "No API keys.")}</tbody>
      </table>
    </div>
    <h3>Create an API key</h3>
    ${ctx.postForm(
      "/keys/api/create",
      html`<div class="field"><label for="api-lifetime">Expires after</label>${
        lifetimeSelect("api-lifetime", 90 * 86400_000)
      }</div>
<div><button type="submit" class="primary" id="create-api-key">Create API key</button></div>`,
      { class: "stack" },
    )}
  `;
}

export const keysPage: PageFactory = (deps) => {
  const idFrom = (ctx: UiContext) => {
    const id = Number(ctx.form.get("id"));
    return Number.isSafeInteger(id) && id > 0 ? id : 0;
  };
  const simple = (
    path: string,
    action: string,
    run: (id: bigint) => Promise<unknown>,
    kind: "pre-auth key" | "API key",
    done: string,
  ) => ({
    method: "POST" as const,
    path,
    async handler(ctx: UiContext) {
      const id = idFrom(ctx);
      const target = `${kind === "API key" ? "api-key" : "preauth-key"}:${id}`;
      const r = await ctx.perform({ action, target }, () => run(BigInt(id)));
      ctx.redirect(
        kind === "API key" ? "/keys#api" : "/keys#preauth",
        r.ok ? { kind: "ok", text: `${kind} ${id} ${done}.` } : { kind: "error", text: r.error },
      );
    },
  });
  return {
    nav: { label: "Keys", path: "/keys", order: 30 },
    routes: [
      {
        method: "GET",
        path: "/keys",
        handler(ctx) {
          ctx.render({ title: "Keys", body: listPage(ctx) });
        },
      },
      {
        method: "POST",
        path: "/keys/preauth/create",
        async handler(ctx) {
          const user = Number(ctx.form.get("user")) || 0;
          const tags = (ctx.form.get("tags") ?? "").split(",").map((t) => t.trim()).filter(Boolean);
          const reusable = ctx.form.get("reusable") === "yes";
          const ephemeral = ctx.form.get("ephemeral") === "yes";
          const expiresAt = new Date(deps.now().getTime() + lifetimeFrom(ctx));
          const details = { user, tags, reusable, ephemeral, expiration: expiresAt.toISOString() };
          const r = await ctx.perform(
            { action: "preauth-key.create", target: user ? `user:${user}` : "tags", details },
            () =>
              deps.api.createPreAuthKey({
                user: BigInt(Math.max(0, user)),
                reusable,
                ephemeral,
                aclTags: tags,
                expiration: timestampFromDate(expiresAt),
              }),
          );
          if (!r.ok) return ctx.redirect("/keys#preauth", { kind: "error", text: r.error });
          const key = r.value.preAuthKey!;
          const up = `tailscale up --login-server=${deps.config.serverUrl} --authkey=${key.key}`;
          ctx.render({
            title: "Pre-auth key created",
            body: html`<div class="flash ok" role="status">Pre-auth key ${
              String(key.id)
            } created. Copy it now:
it is not shown again.</div>
${secretBox("new-key", key.key, "Key")}
${secretBox("tailscale-up", up, "On the machine")}
<p><a href="${ctx.href("/keys")}">Back to keys</a></p>`,
          });
        },
      },
      simple(
        "/keys/preauth/expire",
        "preauth-key.expire",
        (id) => deps.api.expirePreAuthKey({ id }),
        "pre-auth key",
        "expired",
      ),
      simple(
        "/keys/preauth/delete",
        "preauth-key.delete",
        (id) => deps.api.deletePreAuthKey({ id }),
        "pre-auth key",
        "deleted",
      ),
      {
        method: "POST",
        path: "/keys/api/create",
        async handler(ctx) {
          const expiresAt = new Date(deps.now().getTime() + lifetimeFrom(ctx));
          const r = await ctx.perform(
            {
              action: "api-key.create",
              target: "api-key",
              details: { expiration: expiresAt.toISOString() },
            },
            () => deps.api.createApiKey({ expiration: timestampFromDate(expiresAt) }),
          );
          if (!r.ok) return ctx.redirect("/keys#api", { kind: "error", text: r.error });
          ctx.render({
            title: "API key created",
            body: html`<div class="flash ok" role="status">API key created. Copy it now: it is not
shown again.</div>
${secretBox("new-key", r.value.apiKey, "Key")}
<p><a href="${ctx.href("/keys")}">Back to keys</a></p>`,
          });
        },
      },
      simple(
        "/keys/api/expire",
        "api-key.expire",
        (id) => deps.api.expireApiKey({ id }),
        "API key",
        "expired",
      ),
      simple(
        "/keys/api/delete",
        "api-key.delete",
        (id) => deps.api.deleteApiKey({ id }),
        "API key",
        "deleted",
      ),
    ],
  };
};
