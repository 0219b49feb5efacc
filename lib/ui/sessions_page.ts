/** Sessions: who is signed in to the admin UI; revoke any session (sign-out is revoking one's own). */
import { html } from "./html.ts";
import type { PageFactory } from "./context.ts";
import { emptyRow, time } from "./format.ts";

export const sessionsPage: PageFactory = (deps) => ({
  nav: { label: "Sessions", path: "/sessions", order: 80 },
  routes: [
    {
      method: "GET",
      path: "/sessions",
      handler(ctx) {
        const rows = deps.sessions.list().map((s) =>
          html`
            <tr data-row-key="${s.id}">
              <td>${s.id}</td>
              <td>${s.displayName}${s.id === ctx.admin.sessionId
                ? html`
                  <span class="badge ok">this browser</span>
                `
                : ""}</td>
              <td><code>${s.identity}</code></td>
              <td>${s.clientAddr}</td>
              <td class="nowrap">${time(s.createdAt)}</td>
              <td class="nowrap">${time(s.expiresAt)}</td>
              <td>${ctx.postForm(
                "/sessions/revoke",
                html`
                  <input type="hidden" name="id" value="${s.id}"><button type="submit"
                    class="danger">Revoke</button>
                `,
                { label: `Revoke session ${s.id}` },
              )}</td>
            </tr>
          `
        );
        ctx.render({
          title: "Sessions",
          body: html`
            <p class="muted">Browsers signed in to this admin UI. The CLI lists them with
            <code>headscale-deno admin sessions</code>.</p>
            <div class="table-wrap">
              <table>
                <thead>
                  <tr>
                    <th scope="col">ID</th>
                    <th scope="col">Admin</th>
                    <th scope="col">Identity</th>
                    <th scope="col">From</th>
                    <th scope="col">Signed in</th>
                    <th scope="col">Expires</th>
                    <th scope="col"><span class="skip">Actions</span></th>
                  </tr>
                </thead>
                <tbody id="sessions">${rows.length ? rows : emptyRow(7, "No sessions.")}</tbody>
              </table>
            </div>
          `,
        });
      },
    },
    {
      method: "POST",
      path: "/sessions/revoke",
      async handler(ctx) {
        const id = Number(ctx.form.get("id"));
        const result = await ctx.perform(
          { action: "session.revoke", target: `session:${id}` },
          async () => {
            if (!(await deps.sessions.revoke(id))) throw new Error(`session ${id} not found`);
          },
        );
        if (result.ok && id === ctx.admin.sessionId) return ctx.redirect("/signin?signed-out=1");
        ctx.redirect(
          "/sessions",
          result.ok
            ? { kind: "ok", text: `Session ${id} revoked.` }
            : { kind: "error", text: result.error },
        );
      },
    },
  ],
});
