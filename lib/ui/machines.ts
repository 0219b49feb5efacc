/**
 * Machines: every node with its owner or tags, addresses, MagicDNS name, OS and client version,
 * online state (live, over /events), last seen, key expiry, routes and exit-node status; and per
 * node: rename, expire, delete, move to a user, set tags, approve routes. Every action is the
 * API call the CLI makes (`nodes rename|expire|delete|move|tag|approve-routes`).
 */
import { type Html, html } from "./html.ts";
import type { PageFactory, RowEvent, UiContext, UiDeps } from "./context.ts";
import type { NodeRecord } from "../store/types.ts";
import type { Change } from "../state/events.ts";
import { advertisedRoutes, isExitRoute } from "../state/routes.ts";
import { emptyRow, relative, time } from "./format.ts";

const FLUSH_MS = 200;

function hostinfo(n: NodeRecord): Record<string, unknown> {
  return n.hostinfo ?? {};
}

function str(v: unknown): string {
  return typeof v === "string" ? v : "";
}

export function magicDnsName(deps: UiDeps, n: NodeRecord): string {
  const d = deps.config.dns;
  return d.magicDns && d.baseDomain ? `${n.givenName}.${d.baseDomain}` : "";
}

function owner(deps: UiDeps, n: NodeRecord): Html {
  if (n.tags.length > 0) {
    return html`${
      n.tags.map((t) =>
        html`
          <span class="badge">${t}</span>
        `
      )
    }`;
  }
  const u = n.userId === null ? undefined : deps.state.getUser(n.userId);
  return u ? html`${u.displayName || u.name}` : html`<span class="muted">—</span>`;
}

function routesCell(deps: UiDeps, n: NodeRecord): Html {
  const announced = advertisedRoutes(n);
  const approved = new Set(n.approvedRoutes);
  const primary = new Set(deps.state.primaryRoutesOf(n.id));
  const subnets = announced.filter((r) => !isExitRoute(r));
  const exitAnnounced = announced.some(isExitRoute);
  const exitApproved = n.approvedRoutes.some(isExitRoute);
  const parts: Html[] = subnets.map((r) =>
    html`<div><code>${r}</code> ${
      approved.has(r)
        ? primary.has(r)
          ? html`<span class="badge ok">primary</span>`
          : html`<span class="badge">approved</span>`
        : html`<span class="badge warn">not approved</span>`
    }</div>`
  );
  // Approved but no longer announced: still listed, so nothing approved is hidden.
  for (const r of n.approvedRoutes) {
    if (!announced.includes(r) && !isExitRoute(r)) {
      parts.push(
        html`<div><code>${r}</code> <span class="badge">approved, not announced</span></div>`,
      );
    }
  }
  if (exitAnnounced || exitApproved) {
    parts.push(
      html`<div>exit node ${
        exitAnnounced && exitApproved
          ? html`<span class="badge ok">approved</span>`
          : exitAnnounced
          ? html`<span class="badge warn">not approved</span>`
          : html`<span class="badge">approved, not announced</span>`
      }</div>`,
    );
  }
  return parts.length ? html`${parts}` : html`<span class="muted">—</span>`;
}

function expiryCell(deps: UiDeps, n: NodeRecord, now: Date): Html {
  if (!n.expiry) return html`<span class="muted">never</span>`;
  if (deps.state.isExpired(n)) {
    return html`<span class="badge bad">expired</span> ${time(n.expiry)}`;
  }
  return html`${time(n.expiry)} <span class="hint">(${relative(n.expiry, now)})</span>`;
}

export function machineRow(deps: UiDeps, n: NodeRecord, now: Date): Html {
  const hi = hostinfo(n);
  const online = deps.state.isOnline(n.id);
  const os = [str(hi.OS), str(hi.OSVersion)].filter(Boolean).join(" ");
  const version = str(hi.IPNVersion).split("-")[0];
  return html`
    <tr data-row-key="${n.id}" data-node-id="${n.id}">
      <th
        scope="row"><a href="${deps.base}/machines/node?id=${n.id}">${n
          .givenName}</a>${n.hostname && n.hostname !== n.givenName
          ? html`<div class="hint">${n.hostname}</div>`
          : ""}${n.ephemeral
          ? html`
            <span class="badge">ephemeral</span>
          `
          : ""}</th>
      <td>${owner(deps, n)}</td>
      <td class="mono">${[n.ipv4, n.ipv6].filter(Boolean).map((a) => html`<div>${a}</div>`)}</td>
      <td class="mono">${magicDnsName(deps, n)}</td>
      <td>${os || html`<span class="muted">—</span>`}${version
        ? html`<div class="hint">${version}</div>`
        : ""}</td>
      <td data-online="${online ? "true" : "false"}"><span class="badge">${online
        ? "online"
        : "offline"}</span></td>
      <td data-last-seen class="nowrap">${online
        ? html`<span class="muted">now</span>`
        : time(n.lastSeen, "never")}</td>
      <td>${expiryCell(deps, n, now)}</td>
      <td>${routesCell(deps, n)}</td>
    </tr>
  `;
}

function nodeFrom(ctx: UiContext, source: URLSearchParams): NodeRecord | undefined {
  const id = Number(source.get("id"));
  return Number.isSafeInteger(id) && id > 0 ? ctx.deps.state.getNode(id) : undefined;
}

function detail(ctx: UiContext, n: NodeRecord): Html {
  const { deps } = ctx;
  const users = deps.state.listUsers();
  const announced = advertisedRoutes(n);
  const routeChoices = [...new Set([...announced, ...n.approvedRoutes])].sort();
  const hidden = html`<input type="hidden" name="id" value="${n.id}">`;
  const hi = hostinfo(n);
  return html`
    <div class="table-wrap">
      <table>
        <thead>
          <tr>
            <th scope="col">Name</th>
            <th scope="col">Owner</th>
            <th scope="col">Addresses</th>
            <th scope="col">MagicDNS</th>
            <th scope="col">OS</th>
            <th scope="col">Status</th>
            <th scope="col">Last seen</th>
            <th scope="col">Key expiry</th>
            <th scope="col">Routes</th>
          </tr>
        </thead>
        <tbody id="machines">${machineRow(deps, n, deps.now())}</tbody>
      </table>
    </div>
    <p class="hint">Node ${n.id} · machine key <code>${n.machineKey}</code> · node key
    <code>${n.nodeKey}</code> · registered ${time(n.createdAt)} by ${n
      .registerMethod}${str(hi.Hostname)
      ? html`
        · reports hostname ${str(hi.Hostname)}
      `
      : ""}</p>

    <h2>Rename</h2>
    ${ctx.postForm(
      "/machines/rename",
      html`
        ${hidden}<label for="new-name">New name</label>
        <input id="new-name" name="name" value="${n
          .givenName}" required pattern="[a-z0-9][a-z0-9-]*"
          autocomplete="off">
        <button type="submit">Rename</button>
      `,
    )}

    <h2>Owner and tags</h2>
    ${n.tags.length === 0
      ? ctx.postForm(
        "/machines/move",
        html`${hidden}<label for="move-user">Move to user</label>
<select id="move-user" name="user">${
          users.map((u) =>
            html`
              <option value="${u.id}" ${u.id === n.userId ? " selected" : ""}>${u.name}</option>
            `
          )
        }</select><button type="submit">Move</button>`,
      )
      : html`<p class="hint">Tagged nodes belong to their tags, not to a user.</p>`}
    ${ctx.postForm(
      "/machines/tags",
      html`
        ${hidden}<label for="tags">Tags</label>
        <input id="tags" name="tags" value="${n.tags.join(", ")}" placeholder="tag:server, tag:prod"
          autocomplete="off">
        <button type="submit">Set tags</button>
        <span class="hint">Comma-separated. A tagged node loses its user and key expiry.</span>
      `,
    )}

    <h2>Routes</h2>
    ${routeChoices.length
      ? ctx.postForm(
        "/machines/routes",
        html`
          ${hidden}<fieldset><legend>Approved routes</legend>${routeChoices.map((r, i) =>
            html`
              <div
                class="check"><input type="checkbox" id="route-${i}" name="route" value="${r}"${n
                    .approvedRoutes.includes(r)
                  ? " checked"
                  : ""}><label for="route-${i}"><code>${r}</code>${isExitRoute(r)
                  ? " (exit node)"
                  : ""}${announced.includes(r) ? "" : " — not announced"}</label></div>
            `
          )}</fieldset><button
            type="submit">Save approved routes</button>
        `,
        { class: "stack" },
      )
      : html`<p class="muted">This node announces no routes.</p>`}

    <h2>Key</h2>
    ${ctx.postForm(
      "/machines/expire",
      html`${hidden}<button type="submit">Expire key now</button>
<span class="hint">The node must log in again.</span>`,
    )}

    <h2>Delete</h2>
    ${ctx.postForm(
      "/machines/delete",
      html`
        ${hidden}<div
          class="check"><input type="checkbox" id="confirm-delete" name="confirm" value="yes" required>
        <label for="confirm-delete">Remove ${n
          .givenName} from the tailnet; it must register again to come back</label></div>
        <button type="submit" class="danger">Delete node</button>
      `,
      { class: "stack" },
    )}
  `;
}

export const machinesPage: PageFactory = (deps) => {
  const dirty = new Set<number>();
  let timer: ReturnType<typeof setTimeout> | undefined;
  let pending: ((e: RowEvent) => void) | undefined;

  const flush = () => {
    timer = undefined;
    const now = deps.now();
    for (const id of dirty) {
      const n = deps.state.getNode(id);
      if (n) {
        pending?.({ target: "machines", key: String(id), html: machineRow(deps, n, now).value });
      }
    }
    dirty.clear();
  };

  /** After a change the page is shown again with a message. */
  const back = (
    ctx: UiContext,
    id: number | undefined,
    r: { ok: boolean; error?: string },
    ok: string,
  ) =>
    ctx.redirect(
      id === undefined ? "/machines" : `/machines/node?id=${id}`,
      r.ok ? { kind: "ok", text: ok } : { kind: "error", text: r.error ?? "failed" },
    );

  const action = (
    path: string,
    run: (ctx: UiContext, n: NodeRecord) => Promise<void>,
  ) => ({
    method: "POST" as const,
    path,
    async handler(ctx: UiContext) {
      const n = nodeFrom(ctx, ctx.form);
      if (!n) return ctx.redirect("/machines", { kind: "error", text: "No such node." });
      await run(ctx, n);
    },
  });

  return {
    nav: { label: "Machines", path: "/machines", order: 10 },
    routes: [
      {
        method: "GET",
        path: "/machines",
        handler(ctx) {
          const now = deps.now();
          const nodes = deps.state.listNodes();
          const online = nodes.filter((n) => deps.state.isOnline(n.id)).length;
          ctx.render({
            title: "Machines",
            live: true,
            body: html`
              <p class="muted" data-counts="machines"><span data-count="rows">${nodes
                .length}</span> machines,
              <span data-count="online">${online}</span> online ·
              updates <span id="live-status">without JavaScript: reload</span></p>
              <div class="table-wrap">
                <table>
                  <thead>
                    <tr>
                      <th scope="col">Name</th>
                      <th scope="col">Owner</th>
                      <th scope="col">Addresses</th>
                      <th scope="col">MagicDNS</th>
                      <th scope="col">OS / version</th>
                      <th scope="col">Status</th>
                      <th scope="col">Last seen</th>
                      <th scope="col">Key expiry</th>
                      <th scope="col">Routes</th>
                    </tr>
                  </thead>
                  <tbody id="machines">${nodes.length
                    ? nodes.map((n) => machineRow(deps, n, now))
                    : emptyRow(9, "No machines yet. Create a pre-auth key under Keys.")}</tbody>
                </table>
              </div>
            `,
          });
        },
      },
      {
        method: "GET",
        path: "/machines/node",
        handler(ctx) {
          const n = nodeFrom(ctx, ctx.url.searchParams);
          if (!n) {
            return ctx.render({
              title: "Machine not found",
              status: 404,
              body: html`<p>There is no such node. <a href="${
                ctx.href("/machines")
              }">All machines</a></p>`,
            });
          }
          ctx.render({ title: `Machine ${n.givenName}`, body: detail(ctx, n) });
        },
      },
      action("/machines/rename", async (ctx, n) => {
        const name = (ctx.form.get("name") ?? "").trim();
        const r = await ctx.perform(
          {
            action: "node.rename",
            target: `node:${n.id}`,
            details: { from: n.givenName, to: name },
          },
          () => deps.api.renameNode({ nodeId: BigInt(n.id), newName: name }),
        );
        back(ctx, n.id, r, `Renamed to ${name}.`);
      }),
      action("/machines/move", async (ctx, n) => {
        const user = Number(ctx.form.get("user"));
        const r = await ctx.perform(
          { action: "node.move", target: `node:${n.id}`, details: { from: n.userId, to: user } },
          () => deps.api.moveNode({ nodeId: BigInt(n.id), user: BigInt(Math.max(0, user || 0)) }),
        );
        back(ctx, n.id, r, "Moved.");
      }),
      action("/machines/tags", async (ctx, n) => {
        const tags = (ctx.form.get("tags") ?? "").split(",").map((t) => t.trim()).filter(Boolean);
        const r = await ctx.perform(
          { action: "node.tag", target: `node:${n.id}`, details: { from: n.tags, to: tags } },
          () => deps.api.setTags({ nodeId: BigInt(n.id), tags }),
        );
        back(ctx, n.id, r, tags.length ? `Tags set: ${tags.join(", ")}.` : "Tags removed.");
      }),
      action("/machines/routes", async (ctx, n) => {
        const routes = ctx.form.getAll("route");
        const r = await ctx.perform(
          {
            action: "node.approve-routes",
            target: `node:${n.id}`,
            details: { from: n.approvedRoutes, to: routes },
          },
          () => deps.api.setApprovedRoutes({ nodeId: BigInt(n.id), routes }),
        );
        back(ctx, n.id, r, "Approved routes saved.");
      }),
      action("/machines/expire", async (ctx, n) => {
        const r = await ctx.perform(
          { action: "node.expire", target: `node:${n.id}` },
          () => deps.api.expireNode({ nodeId: BigInt(n.id) }),
        );
        back(ctx, n.id, r, "Key expired.");
      }),
      action("/machines/delete", async (ctx, n) => {
        if (ctx.form.get("confirm") !== "yes") {
          return back(ctx, n.id, { ok: false, error: "Tick the box to confirm." }, "");
        }
        const r = await ctx.perform(
          { action: "node.delete", target: `node:${n.id}`, details: { name: n.givenName } },
          () => deps.api.deleteNode({ nodeId: BigInt(n.id) }),
        );
        back(ctx, r.ok ? undefined : n.id, r, `Deleted ${n.givenName}.`);
      }),
    ],
    onChanges(changes: readonly Change[], push) {
      pending = push;
      for (const c of changes) {
        switch (c.kind) {
          case "node-removed":
            dirty.delete(c.nodeId);
            push({ target: "machines", key: String(c.nodeId), remove: true });
            break;
          case "node-patched":
            if (
              c.patch.online !== undefined || c.patch.lastSeen !== undefined ||
              c.patch.keyExpiry !== undefined
            ) dirty.add(c.nodeId);
            break;
          case "node-added":
          case "node-updated":
          case "node-expired":
          case "primary-routes-changed":
            dirty.add(c.nodeId);
            break;
          case "user-updated":
            for (const n of deps.state.listNodes()) if (n.userId === c.userId) dirty.add(n.id);
            break;
        }
      }
      if (dirty.size > 0 && timer === undefined) timer = setTimeout(flush, FLUSH_MS);
    },
    close() {
      if (timer !== undefined) clearTimeout(timer);
    },
  };
};
