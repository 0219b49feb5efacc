/**
 * The JS memory a map session holds (both ends of it: HTTP/2 connection and stream, MapStream,
 * notifier entry, client) must not depend on how many peers it has: full maps are built from
 * shared caches and sent from shared frames, peer sets are interned. Measured in a subprocess
 * with a forced GC (tests/helpers/session_memory_probe.ts); how much a slow reader makes the
 * server's HTTP/2 layer hold is pinned by h2_server_test.ts.
 */
import assert from "node:assert/strict";

interface Probe {
  nodes: number;
  sessions: number;
  fullMapBytes: number;
  perSessionBytes: number;
}

async function probe(nodes: number, sessions: number): Promise<Probe> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-all",
      "--v8-flags=--expose-gc",
      new URL("./helpers/session_memory_probe.ts", import.meta.url).pathname,
      String(nodes),
      String(sessions),
    ],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(out.stdout);
  assert.ok(out.success, new TextDecoder().decode(out.stderr) + text);
  return JSON.parse(text.trim().split("\n").at(-1)!);
}

Deno.test("map sessions: the JS memory per session is the same with 100 and 1,500 peers", async () => {
  const small = await probe(100, 40);
  const large = await probe(1500, 40);
  // The large tailnet's full map is ~10 times the small one's (compressed, so it varies with the
  // random keys: 9.99 times once, which a bound of 10 failed): a session that kept its map, or
  // anything of a few bytes per peer, shows here.
  assert.ok(large.fullMapBytes > 6 * small.fullMapBytes, JSON.stringify({ small, large }));
  const growth = large.perSessionBytes - small.perSessionBytes;
  assert.ok(
    growth < 8 << 10,
    `per session ${small.perSessionBytes} B at 100 peers, ${large.perSessionBytes} B at 1,500`,
  );
  // Both ends of a session (server and test client) come to ~50 KB of JS objects.
  assert.ok(large.perSessionBytes < 200 << 10, `${large.perSessionBytes} B per session`);
});
