/**
 * The Health page's content from a HealthSnapshot: version, database, tailnet figures with
 * their charts, the embedded relay's load and the DERP regions. Pure markup, no script.
 */
import { type Html, html } from "./html.ts";
import type { HealthSnapshot, RegionInfo } from "./health_status.ts";
import { sparkline } from "./health_sparkline.ts";
import type { Point } from "./health_sampler.ts";

export function healthView(s: HealthSnapshot): Html {
  const v = s.version;
  return html`
    <section aria-labelledby="h-server">
      <h2 id="h-server">Server</h2>
      <dl class="facts">
        <dt>Version</dt>
        <dd>headscale-deno ${v.version} (${v.go.version}, ${v.go.os}/${v.go.arch})</dd>
        <dt>Database</dt>
        <dd>${s.database.kind}: ${s.database.writable
          ? html`<span class="badge ok">writable</span>`
          : html`<span class="badge bad">not writable</span> — ${
            s.database.reason ?? "unknown reason"
          }`}</dd>
      </dl>
    </section>
    <section aria-labelledby="h-tailnet">
      <h2 id="h-tailnet">Tailnet</h2>
      <div class="charts">
    ${chart("Nodes online", `${s.tailnet.online} of ${s.tailnet.nodes}`, s.series.nodesOnline, s)}
    ${chart("Map sessions", String(s.tailnet.sessions), s.series.mapSessions, s)}
    ${chart(
      "Changes per minute",
      lastValue(s.series.changesPerMinute),
      s.series.changesPerMinute,
      s,
    )}
      </div>
      <p
        class="hint">Sampled every ${Math.round(s.series.intervalMs / 1000)} s over the last ${Math
          .round(s.series.windowMs / 60_000)} minutes (kept in memory; a restart starts afresh).</p>
    </section>
    <section aria-labelledby="h-relay"><h2 id="h-relay">Embedded DERP relay</h2>
    ${relayView(s)}
    </section>
    <section aria-labelledby="h-regions"><h2 id="h-regions">DERP regions</h2>
    ${regionsView(s.regions)}
    </section>
  `;
}

function lastValue(points: readonly Point[]): string {
  const last = points.at(-1);
  return last ? String(last.v) : "—";
}

function chart(label: string, figure: string, points: readonly Point[], s: HealthSnapshot): Html {
  return html`
    <figure
      class="chart"><figcaption>${label} <strong>${figure}</strong></figcaption>${sparkline(
        points,
        { label, windowMs: s.series.windowMs, now: s.now },
      )}</figure>
  `;
}

function relayView(s: HealthSnapshot): Html {
  const r = s.relay;
  if (!r) return html`<p>The embedded relay is off (<code>derp.server.enabled</code>).</p>`;
  return html`
    <dl class="facts">
      <dt>Connected clients</dt>
      <dd>${r.clients} (${r.uniqueKeys} nodes, ${r.homeClients} with this region as home)</dd>
      <dt>Packets relayed</dt>
      <dd>${r.packetsForwarded}</dd>
      <dt>Bytes relayed</dt>
      <dd>${formatBytes(r.bytesForwarded)}</dd>
      <dt>Packets dropped</dt>
      <dd>${r.droppedUnknownDest} to unknown destinations, ${r.droppedQueueFull} on full queues</dd>
      <dt>STUN</dt>
      <dd>${s.stun ? html`${s.stun.requests} requests, ${s.stun.responses} answered` : "off"}</dd>
    </dl>
  `;
}

function regionsView(regions: readonly RegionInfo[]): Html {
  if (regions.length === 0) {
    return html`
      <p
        class="flash error">The DERP map is empty: clients without a direct path cannot connect. Enable <code>derp.server</code> or set <code>derp.urls</code>.</p>
    `;
  }
  return html`
    <div class="table-wrap">
      <table aria-labelledby="h-regions">
        <thead>
          <tr>
            <th scope="col">ID</th>
            <th scope="col">Code</th>
            <th scope="col">Name</th>
            <th scope="col">Nodes</th>
          </tr>
        </thead>
        <tbody>${regions.map((r) =>
          html`
            <tr>
              <td>${r.id}</td>
              <td>${r.code}</td>
              <td>${r.name}${r.embedded
                ? html`
                  <span class="badge ok">this server</span>
                `
                : null}${r.avoid
                ? html`
                  <span class="badge warn">avoided</span>
                `
                : null}</td>
              <td>${r.nodes.map((n) =>
                html`<div>${n.name}: ${n.hostName}${n.derpPort ? `:${n.derpPort}` : ""}${
                  n.stunPort && n.stunPort > 0 ? ` (STUN ${n.stunPort})` : ""
                }</div>`
              )}</td>
            </tr>
          `
        )}</tbody>
      </table>
    </div>
  `;
}

function formatBytes(n: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0, v = n;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return i === 0 ? `${n} B` : `${v.toFixed(1)} ${units[i]}`;
}
