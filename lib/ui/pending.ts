/**
 * Pending: what waits for an admin in the auth request registry (lib/auth_requests). A login
 * (`tailscale up` without a key) is registered to the chosen user (`auth register`), approved
 * when it is a known machine re-authenticating (`auth approve`, it keeps its owner), or rejected
 * (`auth reject`); an SSH check is approved or rejected. The blocked client goes on at once.
 */
import { type Html, html } from "./html.ts";
import type { PageFactory, UiContext } from "./context.ts";
import type { AuthRequestInfo } from "../auth_requests/registry.ts";
import { emptyRow, relative, time } from "./format.ts";

function nodeName(ctx: UiContext, id: number | undefined): Html {
  const n = id === undefined ? undefined : ctx.deps.state.getNode(id);
  return n
    ? html`<a href="${ctx.href(`/machines/node?id=${n.id}`)}">${n.givenName}</a>`
    : html`<span class="muted">node ${id ?? "?"}</span>`;
}

function loginRow(ctx: UiContext, r: AuthRequestInfo): Html {
  const { deps } = ctx;
  const now = deps.now();
  const known = r.machineKey
    ? deps.state.listNodes().find((n) => n.machineKey === r.machineKey)
    : undefined;
  const knownOwner = known?.userId ? deps.state.getUser(known.userId) : undefined;
  const id = html`<input type="hidden" name="auth_id" value="${r.id}">`;
  const users = deps.state.listUsers();
  return html`
    <tr data-row-key="${r.id}" data-auth-id="${r.id}">
      <th scope="row">${r.hostname ||
        html`<span class="muted">unnamed</span>`}${r.kind === "debug-node"
        ? html`
          <span class="badge">debug</span>
        `
        : ""}</th>
      <td class="mono">${r.machineKey ?? ""}</td>
      <td>${known
        ? html`known machine: ${nodeName(ctx, known.id)}${
          knownOwner
            ? html`
              (${knownOwner.name})
            `
            : ""
        }`
        : html`<span class="muted">new machine</span>`}</td>
      <td class="nowrap">${time(r.createdAt)}<div class="hint">expires ${relative(
        r.expiresAt,
        now,
      )}</div></td>
      <td>${users.length
        ? ctx.postForm(
          "/pending/register",
          html`
            ${id}<label for="user-${r.id}">User</label><select id="user-${r.id}"
              name="user">${users.map((u) =>
                html`
                  <option value="${u.id}" ${knownOwner?.id === u.id ? " selected" : ""}>${u
                    .name}</option>
                `
              )}</select><button type="submit" class="primary">Register</button>
          `,
          { label: `Register ${r.hostname ?? r.id}` },
        )
        : html`<span class="hint">Create a user first.</span>`}
    ${known && r.kind === "login"
      ? ctx.postForm(
        "/pending/approve",
        html`${id}<button type="submit">Approve (keeps its owner)</button>`,
      )
      : ""}
    ${ctx.postForm(
      "/pending/reject",
      html`${id}<button type="submit" class="danger">Reject</button>`,
    )}</td>
    </tr>
  `;
}

function sshRow(ctx: UiContext, r: AuthRequestInfo): Html {
  const id = html`<input type="hidden" name="auth_id" value="${r.id}">`;
  return html`
    <tr data-row-key="${r.id}" data-auth-id="${r.id}">
      <td>${nodeName(ctx, r.src)}</td>
      <td>${nodeName(ctx, r.dst)}</td>
      <td class="nowrap">${time(r.createdAt)}<div class="hint">expires ${relative(
        r.expiresAt,
        ctx.deps.now(),
      )}</div></td>
      <td>${ctx.postForm(
        "/pending/approve",
        html`${id}<button type="submit" class="primary">Approve</button>`,
      )}
    ${ctx.postForm(
      "/pending/reject",
      html`${id}<button type="submit" class="danger">Reject</button>`,
    )}</td>
    </tr>
  `;
}

export const pendingPage: PageFactory = (deps) => {
  const decide = (
    path: string,
    action: string,
    run: (ctx: UiContext, authId: string) => Promise<unknown>,
    done: string,
  ) => ({
    method: "POST" as const,
    path,
    async handler(ctx: UiContext) {
      const authId = ctx.form.get("auth_id") ?? "";
      const user = ctx.form.get("user") ?? undefined;
      const r = await ctx.perform(
        { action, target: `auth:${authId}`, details: user ? { user } : {} },
        () => run(ctx, authId),
      );
      ctx.redirect(
        "/pending",
        r.ok ? { kind: "ok", text: done } : { kind: "error", text: r.error },
      );
    },
  });
  return {
    nav: { label: "Pending", path: "/pending", order: 40 },
    routes: [
      {
        method: "GET",
        path: "/pending",
        handler(ctx) {
          const all = deps.authRequests.list().filter((r) => r.status === "pending");
          const logins = all.filter((r) => r.kind === "login" || r.kind === "debug-node");
          const checks = all.filter((r) => r.kind === "ssh-check");
          ctx.render({
            title: "Pending",
            body: html`
              <h2>Logins</h2>
              <p class="muted">Machines that ran <code>tailscale up</code> without a key and wait for an
              admin (as <code>headscale-deno auth register</code>).</p>
              <div class="table-wrap">
                <table>
                  <thead>
                    <tr>
                      <th scope="col">Machine</th>
                      <th scope="col">Machine key</th>
                      <th scope="col">Known as</th>
                      <th scope="col">Asked</th>
                      <th scope="col">Decision</th>
                    </tr>
                  </thead>
                  <tbody id="pending-logins">${logins.length
                    ? logins.map((r) => loginRow(ctx, r))
                    : emptyRow(5, "No logins waiting.")}</tbody>
                </table>
              </div>
              <h2>SSH checks</h2>
              <div class="table-wrap">
                <table>
                  <thead>
                    <tr>
                      <th scope="col">From</th>
                      <th scope="col">To</th>
                      <th scope="col">Asked</th>
                      <th scope="col">Decision</th>
                    </tr>
                  </thead>
                  <tbody id="pending-ssh">${checks.length
                    ? checks.map((r) => sshRow(ctx, r))
                    : emptyRow(4, "No SSH checks waiting.")}</tbody>
                </table>
              </div>
              <p><a class="button" href="${ctx.href("/pending")}">Refresh</a></p>
            `,
          });
        },
      },
      decide(
        "/pending/register",
        "auth.register",
        (ctx, authId) => deps.api.authRegister({ authId, user: ctx.form.get("user") ?? "" }),
        "Registered: the machine is joining.",
      ),
      decide(
        "/pending/approve",
        "auth.approve",
        (_ctx, authId) => deps.api.authApprove({ authId }),
        "Approved.",
      ),
      decide(
        "/pending/reject",
        "auth.reject",
        (_ctx, authId) => deps.api.authReject({ authId }),
        "Rejected.",
      ),
    ],
  };
};
