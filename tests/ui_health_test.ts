/**
 * The admin UI's Health page: the sampler's ring buffers, the sparklines, and the page's
 * content (escaped) from a snapshot.
 */
import assert from "node:assert/strict";
import { HealthSampler, RingBuffer } from "../lib/ui/health_sampler.ts";
import { sparkline } from "../lib/ui/health_sparkline.ts";
import { collectHealth } from "../lib/ui/health_status.ts";
import { healthView } from "../lib/ui/health_view.ts";
import { versionInfo } from "../lib/version.ts";
import { Browser, signInWithLink, startUiServer } from "./helpers/ui.ts";
import { registerTestNode } from "./helpers/memory_state.ts";

Deno.test("the ring buffer keeps the newest items, oldest first", () => {
  const r = new RingBuffer<number>(3);
  assert.deepEqual(r.toArray(), []);
  r.push(1);
  r.push(2);
  assert.deepEqual(r.toArray(), [1, 2]);
  r.push(3);
  r.push(4);
  r.push(5);
  assert.deepEqual(r.toArray(), [3, 4, 5]);
  assert.equal(r.length, 3);
  for (let i = 6; i <= 100; i++) r.push(i);
  assert.deepEqual(r.toArray(), [98, 99, 100]);
  assert.throws(() => new RingBuffer(0), RangeError);
});

Deno.test("the sampler keeps one window of readings and turns the change count into a rate", () => {
  let now = 1_000_000;
  let online = 0, changes = 0;
  const sampler = new HealthSampler({
    nodesOnline: () => online,
    mapSessions: () => online * 2,
    changesTotal: () => changes,
  }, { intervalMs: 60_000, windowMs: 5 * 60_000, now: () => now });
  for (let i = 0; i < 8; i++) {
    sampler.sample();
    now += 60_000;
    online++;
    changes += 30 * i; // 0, 30, 60, … changes in each following minute
  }
  const s = sampler.series();
  assert.deepEqual(s.nodesOnline.map((p) => p.v), [3, 4, 5, 6, 7], "the last five minutes");
  assert.deepEqual(s.mapSessions.map((p) => p.v), [6, 8, 10, 12, 14]);
  assert.deepEqual(
    s.nodesOnline.map((p) => p.t),
    [4, 5, 6, 7, 8].map((i) => 1_000_000 + (i - 1) * 60_000),
  );
  // The first sample only sets the baseline; each later one is the minute before it.
  assert.deepEqual(s.changesPerMinute.map((p) => p.v), [60, 90, 120, 150, 180]);
});

Deno.test("a sparkline is inline SVG with attributes only (no style), labelled for readers", () => {
  const svg = sparkline([{ t: 0, v: 1 }, { t: 30_000, v: 4 }, { t: 60_000, v: 2 }], {
    label: "Nodes <online>",
    windowMs: 60_000,
    now: 60_000,
    width: 100,
    height: 20,
  }).value.replace(/\s+/g, " ").trim();
  assert.match(svg, /^<svg [^>]*role="img"/);
  assert.ok(!/style/i.test(svg), "no style attribute or element (CSP style-src 'self')");
  assert.match(svg, /aria-label="Nodes &#60;online&#62;: 2 now, at most 4 in the last 1 minutes"/);
  // x from the window's start to now; y scaled to the largest value.
  assert.match(svg, /points="2,14 50,2 98,10"/);
  const empty = sparkline([], { label: "x", windowMs: 1, now: 0 }).value;
  assert.match(empty, /no samples yet/);
  assert.ok(!empty.includes("polyline"));
});

Deno.test("the page shows the figures it was given and escapes DERP region names", async () => {
  let now = 5_000_000;
  const sampler = new HealthSampler({
    nodesOnline: () => 2,
    mapSessions: () => 3,
    changesTotal: () => 0,
  }, { intervalMs: 10_000, now: () => now });
  sampler.sample();
  now += 10_000;
  sampler.sample();
  const snapshot = await collectHealth({
    derpMap: () => ({
      Regions: {
        "999": {
          RegionID: 999,
          RegionCode: "headscale",
          RegionName: "Headscale Embedded DERP",
          Nodes: [{ Name: "999", RegionID: 999, HostName: "derp.example.com", DERPPort: 443 }],
        },
        "1": {
          RegionID: 1,
          RegionCode: "x<y",
          RegionName: `<script>alert("hi")</script>`,
          Nodes: [],
        },
        "2": null,
      },
    }),
    derpStats: () => ({
      relay: {
        connections: 4,
        clients: 3,
        uniqueKeys: 3,
        homeClients: 2,
        accepts: 9,
        handshakeFailures: 0,
        rejected: 0,
        packetsForwarded: 1234,
        bytesForwarded: 5 * 1024 * 1024,
        droppedUnknownDest: 7,
        droppedQueueFull: 0,
        peerGoneDisconnected: 0,
        peerGoneNotHere: 0,
        pongs: 0,
      },
      stun: { requests: 11, responses: 10, ignored: 1 },
    }),
    embeddedRegionId: 999,
    store: {
      kind: "sqlite",
      checkWritable: () => Promise.reject(new Error("the SQLite database /x is full")),
    },
    state: { nodeCount: 3, onlineCount: 2 },
    mapSessions: () => 3,
    sampler,
    now: () => now,
  });
  assert.deepEqual(snapshot.regions.map((r) => [r.id, r.embedded]), [[1, false], [999, true]]);
  const page = healthView(snapshot).value.replace(/\s+/g, " ");
  assert.ok(!page.includes("<script>"), "a region name is text, not markup");
  assert.ok(page.includes("&#60;script&#62;alert(&#34;hi&#34;)&#60;/script&#62;"));
  assert.ok(page.includes("x&#60;y"));
  assert.match(page, /Headscale Embedded DERP <span class="badge ok">this server<\/span>/);
  assert.match(page, /derp\.example\.com:443/);
  assert.match(
    page,
    /sqlite: <span class="badge bad">not writable<\/span> — the SQLite database \/x is full/,
  );
  assert.match(page, /Nodes online <strong>2 of 3<\/strong>/);
  assert.match(page, /Map sessions <strong>3<\/strong>/);
  assert.match(page, /<dt>Connected clients<\/dt> <dd>3 \(3 nodes, 2 with this region as home\)/);
  assert.match(page, /<dt>Packets relayed<\/dt> <dd>1234</);
  assert.match(page, /5\.0 MiB/);
  assert.match(page, /11 requests, 10 answered/);
  assert.match(page, /Changes per minute <strong>0<\/strong>/);
});

Deno.test("ui health page: the real figures of a small in-process server, region names escaped", async () => {
  const ui = await startUiServer("", (config) => {
    config.derp.server.enabled = true;
    config.derp.server.stunEnabled = false;
    config.derp.server.regionName = `Home <b>&</b> "away"`;
  });
  const { server } = ui;
  try {
    const { state } = server;
    const alice = await state.createUser({ name: "alice" });
    for (const n of [1, 2, 3]) {
      await registerTestNode(state, alice.id, `host${n}`);
    }
    state.streamOpened(state.listNodes()[0].id);
    const b = new Browser(ui.base);
    await signInWithLink(ui, b);
    const page = await b.page("/admin/health");
    assert.equal(page.status, 200);
    const text = page.text.replace(/\s+/g, " ");
    assert.match(text, /<title>Health · headscale-deno<\/title>/);
    assert.match(text, /Nodes online <strong>1 of 3<\/strong>/);
    assert.match(text, /Map sessions <strong>0<\/strong>/);
    assert.match(text, /sqlite: <span class="badge ok">writable<\/span>/);
    assert.ok(text.includes(`headscale-deno ${versionInfo().version}`));
    // The embedded region, marked, with its name as text.
    assert.ok(text.includes("Home &#60;b&#62;&#38;&#60;/b&#62; &#34;away&#34;"), text);
    assert.ok(!text.includes("<b>&</b>"));
    assert.match(text, /<td>999<\/td> <td>headscale<\/td>/);
    assert.match(text, /<span class="badge ok">this server<\/span>/);
    assert.match(text, /<dt>Connected clients<\/dt> <dd>0 \(0 nodes/);
    // The sampler started with the server: its first reading is drawn.
    assert.match(text, /<svg class="sparkline"[^>]*aria-label="Nodes online: 0 now/);
    // The same CSP as every page: the inline SVG needs no style.
    assert.match(page.res.headers.get("content-security-policy") ?? "", /style-src 'self'/);
    assert.ok(!/<svg[^>]* style=/.test(text));
  } finally {
    await ui.close();
  }
});
