import assert from "node:assert/strict";
import { HaProber, PingTracker } from "../lib/control/ha_prober.ts";
import { silentLogger } from "../lib/log/log.ts";
import type { SharedMessage } from "../lib/mapper/framing.ts";
import { PrimaryRoutes } from "../lib/state/routes.ts";
import type { NodeRecord } from "../lib/store/types.ts";

function router(id: number, routes: string[]): NodeRecord {
  return {
    id,
    hostinfo: { Hostname: `r${id}`, RoutableIPs: routes },
    approvedRoutes: routes,
  } as unknown as NodeRecord;
}

/** Three routers for 10.1.0.0/24 (r4 also 10.2.0.0/24 alone), all online. */
function routes() {
  const nodes = new Map([1, 2, 3].map((id) => [id, router(id, ["10.1.0.0/24"])]));
  nodes.set(4, router(4, ["10.2.0.0/24"]));
  const online = new Set([1, 2, 3, 4]);
  const primary = new PrimaryRoutes({
    getNode: (id) => nodes.get(id),
    isOnline: (id) => online.has(id),
  });
  primary.update(nodes.keys());
  const primaryOf = (prefix: string) =>
    [1, 2, 3, 4].filter((id) => primary.primaryRoutesOf(id).includes(prefix));
  return { primary, online, primaryOf };
}

Deno.test("primary routes: an unhealthy primary loses its prefix to the lowest healthy router and does not take it back", () => {
  const { primary, primaryOf } = routes();
  assert.deepEqual(primaryOf("10.1.0.0/24"), [1]);
  assert.deepEqual(primary.haRouters(), [1, 2, 3], "r4's prefix has one router: not HA");

  assert.deepEqual(primary.setHealth(new Map([[1, false], [2, true], [3, true]])), [1, 2]);
  assert.deepEqual(primaryOf("10.1.0.0/24"), [2]);
  assert.equal(primary.isHealthy(1), false);
  // r2 fails too: r3 is the only healthy one left.
  primary.setHealth(new Map([[1, false], [2, false], [3, true]]));
  assert.deepEqual(primaryOf("10.1.0.0/24"), [3]);
  // Everyone answers again: no flapping back to r1.
  assert.deepEqual(primary.setHealth(new Map([[1, true], [2, true], [3, true]])), []);
  assert.deepEqual(primaryOf("10.1.0.0/24"), [3]);
});

Deno.test("primary routes: when every router is unhealthy the primary stays; an offline router's mark does not stick", () => {
  const { primary, online, primaryOf } = routes();
  primary.setHealth(new Map([[1, false], [2, false], [3, false]]));
  assert.deepEqual(
    primaryOf("10.1.0.0/24"),
    [1],
    "better a suspect primary than a switch to another",
  );
  online.delete(2);
  primary.update([2]);
  primary.clearHealth(2);
  assert.equal(primary.isHealthy(2), true);
  assert.equal(primary.setHealth(new Map([[2, false]])).length, 0, "offline: no mark");
  assert.equal(primary.isHealthy(2), true);
});

interface Sent {
  nodeId: number;
  url: string;
}

function prober(o: { routers: number[]; answer: (nodeId: number) => boolean }) {
  const sent: Sent[] = [];
  const epochs = new Map<number, number>();
  const applied: Map<number, boolean>[] = [];
  const online = new Set(o.routers);
  const p: HaProber = new HaProber({
    state: {
      haRouters: () => o.routers.filter((id) => online.has(id)),
      isOnline: (id) => online.has(id),
      sessionEpoch: (id) => epochs.get(id) ?? 1,
      setRouterHealth: (results) => {
        applied.push(new Map(results));
        return true;
      },
    },
    send: (nodeId, msg: SharedMessage) => {
      if (!online.has(nodeId)) return false;
      const url = JSON.parse(msg.json).PingRequest.URL as string;
      sent.push({ nodeId, url });
      if (o.answer(nodeId)) queueMicrotask(() => answer(p, url));
      return true;
    },
    serverUrl: "https://hs.example.com",
    intervalMs: 0,
    timeoutMs: 30,
    log: silentLogger(),
  });
  return { p, sent, epochs, applied, online };
}

/** The client's HEAD request to the ping's URL, through the HTTP handler. */
function answer(p: HaProber, url: string, method = "HEAD"): number {
  let status = 0;
  const res = {
    writeHead(code: number) {
      status = code;
      return this;
    },
    end() {},
  };
  const u = new URL(url);
  p.pingResponse({ method, url: u.pathname + u.search } as never, res as never);
  return status;
}

Deno.test("HA prober: pings every HA router with a PingRequest to <server_url>/machine/ping-response; a silent one is unhealthy from its second stable cycle", async () => {
  const t = prober({ routers: [1, 2], answer: (id) => id === 2 });
  try {
    await t.p.probeOnce();
    assert.deepEqual(t.sent.map((s) => s.nodeId), [1, 2]);
    for (const s of t.sent) {
      assert.match(s.url, /^https:\/\/hs\.example\.com\/machine\/ping-response\?id=[a-z0-9]{16}$/);
    }
    assert.equal(t.applied.length, 0, "r1's session was new this cycle: the decision waits");
    await t.p.probeOnce();
    assert.deepEqual(new Map(t.applied[0]), new Map([[1, false], [2, true]]));
    assert.equal(t.p.pings.size, 0, "nothing left waiting");

    // A reconnect between cycles makes the session fresh again.
    t.epochs.set(1, 2);
    await t.p.probeOnce();
    assert.equal(t.applied.length, 1);
    // Offline routers are not pinged and nothing is decided about them.
    t.online.delete(1);
    await t.p.probeOnce();
    assert.deepEqual([...t.applied[1]], [[2, true]]);
  } finally {
    t.p.close();
  }
});

Deno.test("ping response: HEAD with a known id is 200 once, unknown 404, no id 400, other methods 405", async () => {
  const t = prober({ routers: [], answer: () => false });
  const tracker = t.p.pings;
  const { id, answered } = tracker.register();
  assert.equal(answer(t.p, `https://x/machine/ping-response?id=${id}`), 200);
  assert.equal(await answered, true);
  assert.equal(answer(t.p, `https://x/machine/ping-response?id=${id}`), 404, "used up");
  assert.equal(answer(t.p, "https://x/machine/ping-response"), 400);
  assert.equal(answer(t.p, `https://x/machine/ping-response?id=${id}`, "GET"), 405);
  const other = new PingTracker();
  const late = other.register();
  other.close();
  assert.equal(await late.answered, false);
  t.p.close();
});
