/** Audit: the newest events of the admin UI's audit log (the CLI: `headscale-deno audit list`). */
import { html } from "./html.ts";
import type { PageFactory } from "./context.ts";
import { emptyRow, time } from "./format.ts";

export const auditPage: PageFactory = (deps) => ({
  nav: { label: "Audit", path: "/audit", order: 90 },
  routes: [{
    method: "GET",
    path: "/audit",
    async handler(ctx) {
      const limit = Math.min(Math.max(Number(ctx.url.searchParams.get("limit")) || 200, 1), 5000);
      const events = await deps.audit.list(limit);
      const rows = events.map((e) =>
        html`
          <tr data-row-key="${e.id}">
            <td class="nowrap">${time(e.at)}</td>
            <td><code>${e.actor}</code></td>
            <td><code>${e.action}</code></td>
            <td>${e.target}</td>
            <td>${e.clientAddr}</td>
            <td><code>${Object.keys(e.details).length ? JSON.stringify(e.details) : ""}</code></td>
          </tr>
        `
      );
      ctx.render({
        title: "Audit log",
        body: html`
          <p class="muted">The newest ${limit} events: changes made here, sign-ins and
          refusals.</p>
          <div class="table-wrap">
            <table>
              <thead>
                <tr>
                  <th scope="col">When</th>
                  <th scope="col">Who</th>
                  <th scope="col">Action</th>
                  <th scope="col">Target</th>
                  <th scope="col">From</th>
                  <th scope="col">Details</th>
                </tr>
              </thead>
              <tbody id="audit">${rows.length ? rows : emptyRow(6, "No events yet.")}</tbody>
            </table>
          </div>
        `,
      });
    },
  }],
});
