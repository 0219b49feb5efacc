/**
 * metrics_listen_addr: Prometheus text at GET /metrics with the tailnet's numbers, read at
 * scrape time; and the registry's text format.
 */
import assert from "node:assert/strict";
import { loadConfig } from "../lib/config/load.ts";
import { silentLogger } from "../lib/log/log.ts";
import { MetricsRegistry } from "../lib/metrics/registry.ts";
import { startServer } from "../lib/server/server.ts";
import { freePort, writeConfig } from "./helpers/server_process.ts";

const hex = (n: number) => n.toString(16).padStart(64, "0");

/** `name{labels} value` lines of an exposition, by series. */
function samples(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const at = line.lastIndexOf(" ");
    out.set(line.slice(0, at), Number(line.slice(at + 1)));
  }
  return out;
}

Deno.test("metrics: /metrics shows users, nodes online and offline, and the process", async () => {
  const dir = await Deno.makeTempDir({ prefix: "hsd-metrics-" });
  try {
    const { config } = loadConfig({ path: writeConfig(dir, freePort()) });
    config.metricsListenAddr = "127.0.0.1:0";
    const server = await startServer(config, silentLogger());
    try {
      assert.ok(server.metricsAddress);
      const url = `http://${server.metricsAddress}/metrics`;
      const { state } = server;
      const alice = await state.createUser({ name: "alice" });
      for (const n of [1, 2]) {
        await state.registerNode({
          machineKey: `mkey:${hex(n)}`,
          nodeKey: `nodekey:${hex(n)}`,
          hostname: `host${n}`,
          hostinfo: { Hostname: `host${n}` },
          userId: alice.id,
          tags: [],
          authKeyId: null,
          method: "cli",
          ephemeral: false,
          expiry: null,
        });
      }
      // What a map stream does when it opens (the control tests cover the stream itself).
      state.streamOpened(state.listNodes()[0].id);

      const res = await fetch(url);
      assert.equal(res.status, 200);
      assert.match(res.headers.get("content-type") ?? "", /^text\/plain; version=0\.0\.4/);
      const text = await res.text();
      const s = samples(text);
      assert.equal(s.get("headscale_users"), 1);
      assert.equal(s.get('headscale_nodes{state="online"}'), 1);
      assert.equal(s.get('headscale_nodes{state="offline"}'), 1);
      assert.equal(s.get("headscale_map_sessions"), 0);
      assert.equal(s.get('headscale_mapresponse_sent_total{type="full"}'), 0);
      assert.ok((s.get("process_resident_memory_bytes") ?? 0) > 0);
      assert.ok(Math.abs(s.get("process_start_time_seconds")! - Date.now() / 1000) < 600);
      assert.match(text, /^# TYPE headscale_map_streams_opened_total counter$/m);
      // The embedded DERP is off in this config: its series are left out, not zero.
      assert.ok(!text.includes("headscale_derp_clients"), text);

      assert.equal((await fetch(`http://${server.metricsAddress}/other`)).status, 404);
      const post = await fetch(url, { method: "POST" });
      assert.equal(post.status, 405);
      await post.body?.cancel();
    } finally {
      await server.close();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("metrics: an empty metrics_listen_addr serves nothing", async () => {
  const dir = await Deno.makeTempDir({ prefix: "hsd-metrics-" });
  try {
    const { config } = loadConfig({ path: writeConfig(dir, freePort()) });
    assert.equal(config.metricsListenAddr, "");
    const server = await startServer(config, silentLogger());
    assert.equal(server.metricsAddress, null);
    await server.close();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("metrics registry: text format, label escaping, a failing reader left out", () => {
  const r = new MetricsRegistry()
    .counter("a_total", "first\nline", () => 3)
    .gauge("b", "labelled", () => [[{ path: 'x"y\\z\n' }, 1.5], [{}, -Infinity]])
    .gauge("c", "broken", () => {
      throw new Error("not now");
    });
  assert.equal(
    r.render(),
    [
      "# HELP a_total first\\nline",
      "# TYPE a_total counter",
      "a_total 3",
      "# HELP b labelled",
      "# TYPE b gauge",
      'b{path="x\\"y\\\\z\\n"} 1.5',
      "b -Inf",
      "",
    ].join("\n"),
  );
  assert.throws(() => r.gauge("a_total", "again", () => 0), /registered twice/);
  assert.throws(() => r.gauge("bad-name", "x", () => 0), /invalid metric name/);
  assert.throws(
    () => new MetricsRegistry().gauge("d", "x", () => [[{ "bad-label": "v" }, 1]]).render(),
    /invalid metric label name/,
  );
});
