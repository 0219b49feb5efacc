/**
 * Users: list (OIDC users with their picture and e-mail), create, rename, delete. Deleting first
 * shows what happens: the user's pre-auth keys go with it, and a user who still owns nodes cannot
 * be deleted (as `users destroy`: delete or move the nodes first).
 */
import { type Html, html } from "./html.ts";
import type { PageFactory, UiContext, UiDeps } from "./context.ts";
import type { UserRecord } from "../store/types.ts";
import { emptyRow, time } from "./format.ts";

function avatar(u: UserRecord): Html {
  // Only https pictures: the CSP allows them, and nothing else should be fetched.
  return u.profilePicUrl.startsWith("https://")
    ? html`<img class="avatar" src="${u.profilePicUrl}" alt="" referrerpolicy="no-referrer">`
    : html``;
}

function userRow(deps: UiDeps, u: UserRecord, nodes: number): Html {
  return html`
    <tr data-row-key="${u.id}" data-user-id="${u.id}">
      <td>${u.id}</td>
      <th scope="row">${avatar(u)}<a href="${deps.base}/users/user?id=${u.id}">${u.name}</a></th>
      <td>${u.displayName}</td>
      <td>${u.email}</td>
      <td>${u.provider === "oidc"
        ? html`<span class="badge">OIDC</span>`
        : html`<span class="muted">local</span>`}</td>
      <td>${nodes}</td>
      <td class="nowrap">${time(u.createdAt)}</td>
    </tr>
  `;
}

function userFrom(ctx: UiContext, source: URLSearchParams): UserRecord | undefined {
  const id = Number(source.get("id"));
  return Number.isSafeInteger(id) && id > 0 ? ctx.deps.state.getUser(id) : undefined;
}

export const usersPage: PageFactory = (deps) => {
  const notFound = (ctx: UiContext) =>
    ctx.render({
      title: "User not found",
      status: 404,
      body: html`<p>There is no such user. <a href="${ctx.href("/users")}">All users</a></p>`,
    });
  return {
    nav: { label: "Users", path: "/users", order: 20 },
    routes: [
      {
        method: "GET",
        path: "/users",
        handler(ctx) {
          const users = deps.state.listUsers();
          const owned = new Map<number, number>();
          for (const n of deps.state.listNodes()) {
            if (n.userId !== null) owned.set(n.userId, (owned.get(n.userId) ?? 0) + 1);
          }
          ctx.render({
            title: "Users",
            body: html`
              <div class="table-wrap">
                <table>
                  <thead>
                    <tr>
                      <th scope="col">ID</th>
                      <th scope="col">Name</th>
                      <th scope="col">Display name</th>
                      <th scope="col">E-mail</th>
                      <th scope="col">Provider</th>
                      <th scope="col">Nodes</th>
                      <th scope="col">Created</th>
                    </tr>
                  </thead>
                  <tbody id="users">${users.length
                    ? users.map((u) => userRow(deps, u, owned.get(u.id) ?? 0))
                    : emptyRow(7, "No users yet.")}</tbody>
                </table>
              </div>
              <h2>Create a user</h2>
              ${ctx.postForm(
                "/users/create",
                html`
                  <div class="field"><label for="user-name">Name</label>
                  <input id="user-name" name="name" required autocomplete="off"></div>
                  <div
                    class="field"><label for="user-display">Display name <span class="hint">(optional)</span></label>
                  <input id="user-display" name="display_name" autocomplete="off"></div>
                  <div class="field"><label for="user-email">E-mail <span class="hint">(optional)</span></label>
                  <input id="user-email" name="email" type="email" autocomplete="off"></div>
                  <div><button type="submit" class="primary">Create user</button></div>
                `,
                { class: "stack" },
              )}
            `,
          });
        },
      },
      {
        method: "POST",
        path: "/users/create",
        async handler(ctx) {
          const name = (ctx.form.get("name") ?? "").trim();
          const displayName = (ctx.form.get("display_name") ?? "").trim();
          const email = (ctx.form.get("email") ?? "").trim();
          const r = await ctx.perform(
            { action: "user.create", target: `user:${name}`, details: { displayName, email } },
            () => deps.api.createUser({ name, displayName, email }),
          );
          ctx.redirect(
            "/users",
            r.ok ? { kind: "ok", text: `User ${name} created.` } : { kind: "error", text: r.error },
          );
        },
      },
      {
        method: "GET",
        path: "/users/user",
        handler(ctx) {
          const u = userFrom(ctx, ctx.url.searchParams);
          if (!u) return notFound(ctx);
          const nodes = deps.state.listNodes().filter((n) => n.userId === u.id);
          ctx.render({
            title: `User ${u.name}`,
            body: html`
              <div class="card">
                <p>${avatar(u)}<b>${u.displayName || u.name}</b>
              ${u.email
                ? html`
                  · ${u.email}
                `
                : ""} · ${u.provider === "oidc"
                ? html`OIDC <code>${u.providerId}</code>`
                : "local user"} · created ${time(u.createdAt)}</p>
                <p>${nodes.length} nodes${nodes.length
                  ? html`: ${
                    nodes.map((n, i) =>
                      html`${i ? ", " : ""}<a href="${
                        ctx.href(`/machines/node?id=${n.id}`)
                      }">${n.givenName}</a>`
                    )
                  }`
                  : ""}</p>
              </div>
              <h2>Rename</h2>
              ${ctx.postForm(
                "/users/rename",
                html`
                  <input type="hidden" name="id" value="${u.id}">
                  <label for="new-user-name">New name</label><input id="new-user-name" name="name" value="${u
                    .name}"
                    required autocomplete="off">
                  <button type="submit">Rename</button>
                `,
              )}
              <h2>Delete</h2>
              <p><a class="button danger" href="${ctx.href(`/users/delete?id=${u.id}`)}">Delete ${u
                .name}…</a></p>
            `,
          });
        },
      },
      {
        method: "POST",
        path: "/users/rename",
        async handler(ctx) {
          const u = userFrom(ctx, ctx.form);
          if (!u) return notFound(ctx);
          const name = (ctx.form.get("name") ?? "").trim();
          const r = await ctx.perform(
            { action: "user.rename", target: `user:${u.id}`, details: { from: u.name, to: name } },
            () => deps.api.renameUser({ oldId: BigInt(u.id), newName: name }),
          );
          ctx.redirect(
            `/users/user?id=${u.id}`,
            r.ok ? { kind: "ok", text: `Renamed to ${name}.` } : { kind: "error", text: r.error },
          );
        },
      },
      {
        method: "GET",
        path: "/users/delete",
        handler(ctx) {
          const u = userFrom(ctx, ctx.url.searchParams);
          if (!u) return notFound(ctx);
          const nodes = deps.state.listNodes().filter((n) => n.userId === u.id);
          const keys = deps.state.listPreAuthKeys(u.id);
          const blocked = nodes.length > 0;
          ctx.render({
            title: `Delete user ${u.name}?`,
            body: html`${
              blocked
                ? html`<div class="flash warn" role="status">${u.name} still owns ${nodes.length} nodes:
it cannot be deleted until they are deleted or moved to another user.</div>
<ul>${
                  nodes.map((n) =>
                    html`<li><a href="${
                      ctx.href(`/machines/node?id=${n.id}`)
                    }">${n.givenName}</a></li>`
                  )
                }</ul>`
                : html`<p>${u.name} owns no nodes.</p>`
            }
<p>${
              keys.length
                ? html`Its ${keys.length} pre-auth keys (${
                  keys.map((k) => `#${k.id}`).join(", ")
                }) are deleted with it.`
                : "It has no pre-auth keys."
            }</p>
${
              blocked ? "" : ctx.postForm(
                "/users/delete",
                html`<input type="hidden" name="id" value="${u.id}"><input type="hidden" name="confirm" value="yes">
<button type="submit" class="danger">Delete ${u.name}</button>
<a href="${ctx.href(`/users/user?id=${u.id}`)}">Cancel</a>`,
              )
            }`,
          });
        },
      },
      {
        method: "POST",
        path: "/users/delete",
        async handler(ctx) {
          const u = userFrom(ctx, ctx.form);
          if (!u) return notFound(ctx);
          if (ctx.form.get("confirm") !== "yes") return ctx.redirect(`/users/delete?id=${u.id}`);
          const r = await ctx.perform(
            { action: "user.delete", target: `user:${u.id}`, details: { name: u.name } },
            () => deps.api.deleteUser({ id: BigInt(u.id) }),
          );
          ctx.redirect(
            r.ok ? "/users" : `/users/delete?id=${u.id}`,
            r.ok
              ? { kind: "ok", text: `User ${u.name} deleted.` }
              : { kind: "error", text: r.error },
          );
        },
      },
    ],
  };
};
