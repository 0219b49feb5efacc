import assert from "node:assert/strict";
import type { ControlClient, MapStreamReader } from "./helpers/control_client.ts";
import { randomKey, startTestControl, type TestControl } from "./helpers/control.ts";
import type { MapRequest, MapResponse } from "../lib/tailcfg/types.ts";
import { clientFilter } from "./helpers/map_fixtures.ts";

interface TestNode {
  id: number;
  hostname: string;
  mkey: string;
  nkey: string;
  disco: string;
  client: ControlClient;
}

async function addNode(
  t: TestControl,
  hostname: string,
  key: string,
): Promise<TestNode> {
  const mkey = randomKey("mkey:");
  const nkey = randomKey("nodekey:");
  const client = t.connect(mkey);
  const reply = await client.register({
    Version: 130,
    NodeKey: nkey,
    Auth: { AuthKey: key },
    Hostinfo: { Hostname: hostname, OS: "linux" },
  });
  assert.equal(reply.status, 200, reply.text);
  return {
    id: t.state.nodeByNodeKey(nkey)!.id,
    hostname,
    mkey,
    nkey,
    disco: randomKey("discokey:"),
    client,
  };
}

function mapRequest(n: TestNode, extra: Partial<MapRequest> = {}): Partial<MapRequest> {
  return {
    Version: 130,
    NodeKey: n.nkey,
    DiscoKey: n.disco,
    Compress: "zstd",
    KeepAlive: true,
    Stream: true,
    Hostinfo: { Hostname: n.hostname, OS: "linux", NetInfo: { PreferredDERP: 999 } },
    Endpoints: ["192.0.2.1:41641", "[2001:db8::1]:41641"],
    ...extra,
  };
}

/** The next non-keep-alive message that satisfies `pred` (skipping unrelated deltas). */
async function nextMatching(
  r: MapStreamReader,
  pred: (m: MapResponse) => boolean,
): Promise<MapResponse> {
  for (;;) {
    const m = await r.nextUpdate(5_000);
    if (m === null) throw new Error("map stream ended");
    if (pred(m)) return m;
  }
}

async function setup(
  fn: (t: TestControl, a: TestNode, b: TestNode) => Promise<void>,
  opts: Parameters<typeof startTestControl>[0] = {},
) {
  const t = await startTestControl(opts);
  try {
    const alice = await t.user("alice");
    const key = await t.authKey({ user: alice, reusable: true });
    const a = await addNode(t, "alpha", key);
    const b = await addNode(t, "beta", key);
    // Registration deltas go out now, so they do not merge with what the test does next.
    t.notifier.flush();
    await fn(t, a, b);
  } finally {
    await t.close();
  }
}

Deno.test("map: the first message is a full map", async () => {
  await setup(async (_t, a, b) => {
    const stream = a.client.map(mapRequest(a));
    assert.equal(await stream.status, 200);
    const m = (await stream.next())!;
    assert.equal(m.Node!.ID, a.id);
    assert.equal(m.Node!.Name, "alpha.tailnet.internal.");
    assert.equal(m.Node!.MachineAuthorized, true);
    assert.equal(m.Node!.Key, a.nkey);
    assert.equal(m.Node!.DiscoKey, a.disco, "the request's disco key is applied first");
    assert.equal(m.Node!.HomeDERP, 999);
    assert.deepEqual(m.Node!.Endpoints, ["192.0.2.1:41641", "[2001:db8::1]:41641"]);
    assert.equal(m.Node!.Hostinfo!.Hostname, "alpha");
    assert.equal(m.Node!.Addresses.length, 2);
    assert.deepEqual(m.Node!.AllowedIPs, m.Node!.Addresses);
    assert.ok(m.Node!.CapMap && "https://tailscale.com/cap/file-sharing" in m.Node!.CapMap);
    assert.equal(m.Node!.Online, true);
    assert.equal(m.Node!.Cap, 130);

    assert.deepEqual(m.Peers!.map((p) => p.ID), [b.id]);
    const peer = m.Peers![0];
    assert.equal(peer.Name, "beta.tailnet.internal.");
    assert.equal(peer.Online, false);
    assert.equal(peer.DiscoKey, undefined, "beta has not sent a map request yet");
    assert.equal(peer.StableID, String(b.id));
    assert.equal(peer.MachineAuthorized, true);
    assert.equal(peer.CapMap, undefined);

    assert.deepEqual(Object.keys(m.DERPMap!.Regions), ["999"]);
    assert.equal(m.DNSConfig!.Proxied, true);
    assert.deepEqual(m.DNSConfig!.Domains, ["tailnet.internal"]);
    assert.deepEqual(m.DNSConfig!.Routes!["tailnet.internal"], []);
    assert.deepEqual(m.DNSConfig!.Routes!["100.100.in-addr.arpa"], []);
    assert.equal(m.PacketFilter, undefined, "the filter goes in named chunks");
    assert.deepEqual(clientFilter([m]), [
      { SrcIPs: ["*"], DstPorts: [{ IP: "*", Ports: { First: 0, Last: 65535 } }] },
    ]);
    assert.equal(m.Domain, "tailnet.internal");
    assert.deepEqual(m.UserProfiles!.map((u) => u.LoginName), ["alice"]);
    assert.equal(m.Debug!.DisableLogTail, true);
    assert.ok(Math.abs(Date.parse(m.ControlTime!) - Date.now()) < 60_000);
    stream.close();
  });
});

Deno.test("map: peers hear about online, endpoints, rename and delete as deltas", async () => {
  await setup(async (t, a, b) => {
    const sa = a.client.map(mapRequest(a));
    await sa.next();

    const sb = b.client.map(mapRequest(b));
    const full = (await sb.next())!;
    assert.equal(full.Peers![0].Online, true, "alpha is online while its stream is open");
    assert.equal(full.Peers![0].DiscoKey, a.disco);

    // beta came online and reported its disco key, endpoints and home DERP.
    const online = await nextMatching(
      sa,
      (m) => !!m.PeersChangedPatch?.some((p) => p.NodeID === b.id && p.Online === true),
    );
    const patch = online.PeersChangedPatch!.find((p) => p.NodeID === b.id)!;
    assert.equal(patch.DiscoKey, b.disco);
    assert.equal(patch.DERPRegion, 999);
    assert.equal(patch.Cap, 130);

    // A lite update: 200, empty body, and the peer gets a patch.
    const lite = b.client.map(mapRequest(b, {
      Stream: false,
      OmitPeers: true,
      Endpoints: ["198.51.100.7:1234"],
    }));
    assert.equal(await lite.status, 200);
    assert.equal(await lite.next(), null);
    const moved = await nextMatching(
      sa,
      (m) => !!m.PeersChangedPatch?.some((p) => p.NodeID === b.id && p.Endpoints),
    );
    assert.deepEqual(
      moved.PeersChangedPatch!.find((p) => p.NodeID === b.id)!.Endpoints,
      ["198.51.100.7:1234"],
    );
    assert.equal(sb.isEnded, false, "a lite update does not break the stream");

    // A rename needs a full node for peers and a new self node for beta.
    await t.state.renameNode(b.id, "gamma");
    const renamed = await nextMatching(sa, (m) => !!m.PeersChanged);
    assert.equal(renamed.PeersChanged![0].Name, "gamma.tailnet.internal.");
    assert.deepEqual(renamed.PeersChanged![0].Endpoints, ["198.51.100.7:1234"]);
    const self = await nextMatching(sb, (m) => !!m.Node);
    assert.equal(self.Node!.Name, "gamma.tailnet.internal.");
    assert.equal(self.PeersChanged, undefined);

    // Going offline.
    sb.close();
    const offline = await nextMatching(
      sa,
      (m) => !!m.PeersChangedPatch?.some((p) => p.NodeID === b.id && p.Online === false),
    );
    assert.ok(offline.PeersChangedPatch!.find((p) => p.NodeID === b.id)!.LastSeen);

    // Delete.
    await t.state.deleteNode(b.id);
    const removed = await nextMatching(sa, (m) => !!m.PeersRemoved);
    assert.deepEqual(removed.PeersRemoved, [b.id]);
    sa.close();
  });
});

Deno.test("map: a deleted node's stream ends; a new stream replaces the old one", async () => {
  await setup(async (t, a, b) => {
    const first = a.client.map(mapRequest(a));
    await first.next();
    const second = a.client.map(mapRequest(a));
    assert.ok((await second.next())!.Node);
    assert.equal(await first.nextUpdate(), null, "the old stream was closed");
    assert.equal(t.state.isOnline(a.id), true, "no offline flap when a stream is replaced");

    const sb = b.client.map(mapRequest(b));
    await sb.next();
    await t.state.deleteNode(b.id);
    // Deltas about other nodes may come first under load; the farewell is the one with Node.
    const farewell = await nextMatching(sb, (m) => !!m.Node);
    assert.equal(farewell.Node!.ID, b.id);
    assert.equal(farewell.Node!.Expired, true, "a deleted node is told its key is dead");
    assert.ok(Date.parse(farewell.Node!.KeyExpiry!) < Date.now());
    assert.equal(await sb.nextUpdate(), null);
    second.close();
  });
});

Deno.test("map: machine-key binding, capability version, body limits and bad JSON", async () => {
  await setup(async (t, a) => {
    const stranger = t.connect(randomKey("mkey:"));
    const stolen = stranger.map(mapRequest(a));
    assert.equal(await stolen.status, 404);
    assert.equal(t.state.isOnline(a.id), false);

    const unknown = a.client.map(mapRequest({ ...a, nkey: randomKey("nodekey:") }));
    assert.equal(await unknown.status, 404);

    const old = await a.client.post("/machine/map", mapRequest(a, { Version: 112 }));
    assert.equal(old.status, 400);
    assert.match(old.text, /unsupported client version/);

    const huge = await a.client.post("/machine/map", mapRequest(a, { Version: 1e300 }));
    assert.equal(huge.status, 400);
    assert.match(huge.text, /out of range/);

    const bad = await a.client.post("/machine/map", '{"Version":130,');
    assert.equal(bad.status, 400);
    assert.match(bad.text, /not valid JSON/);

    const big = await a.client.post(
      "/machine/map",
      JSON.stringify({ ...mapRequest(a), pad: "y".repeat(5 * 2 ** 20) }),
    );
    assert.equal(big.status, 413);

    const health = await a.client.post("/machine/update-health", {});
    assert.equal(health.status, 200);
    const dns = await a.client.post("/machine/set-dns", {
      Version: 130,
      NodeKey: a.nkey,
      Name: "x",
      Type: "TXT",
      Value: "y",
    });
    assert.equal(dns.status, 200);
    assert.equal(dns.text, "{}");
    const dnsStolen = await stranger.post("/machine/set-dns", { Version: 130, NodeKey: a.nkey });
    assert.equal(dnsStolen.status, 404);
    const whoami = await a.client.request("GET", "/machine/whoami");
    assert.equal(whoami.status, 501);

    // Hostile Hostinfo and endpoints are cleaned before peers see them.
    const lite = a.client.map(mapRequest(a, {
      Stream: false,
      OmitPeers: true,
      Hostinfo: { hostname: 5, OS: "linux", RoutableIPs: ["nope"], PushDeviceToken: "secret" },
      Endpoints: ["[fe80::1%eth0]:1", "[fe80::1]:2", "1.2.3.4:99999", "bad", "1.2.3.4:5"],
    }));
    assert.equal(await lite.status, 200);
    const node = t.state.getNode(a.id)!;
    assert.deepEqual(node.endpoints, ["1.2.3.4:5"]);
    assert.deepEqual(node.hostinfo, { OS: "linux", RoutableIPs: [] });
  });
});

Deno.test("map: keep-alives, uncompressed streams and one-shot maps", async () => {
  await setup(async (_t, a) => {
    const plain = a.client.map(mapRequest(a, { Compress: "" }));
    const first = (await plain.next())!;
    assert.equal(first.Node!.ID, a.id);
    let ka = await plain.next(5_000);
    while (ka && !ka.KeepAlive) ka = await plain.next(5_000);
    assert.deepEqual(ka, { KeepAlive: true });
    plain.close();

    const once = a.client.map(mapRequest(a, { Stream: false, OmitPeers: false }));
    assert.ok((await once.next())!.Node);
    assert.equal(await once.next(), null);
  }, { tuning: { keepAliveMs: 30, keepAliveJitterMs: 10 } });
});

Deno.test("map: an ephemeral node is deleted after staying offline", async () => {
  // Long enough that a slow machine reconnects well inside it.
  const timeoutMs = 2_000;
  const t = await startTestControl({
    configure: (c) => c.node.ephemeralInactivityTimeoutMs = timeoutMs,
  });
  const until = async (what: string, ok: () => boolean) => {
    const deadline = Date.now() + 10_000;
    while (!ok()) {
      if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  };
  try {
    const alice = await t.user("alice");
    const key = await t.authKey({ user: alice, ephemeral: true, reusable: true });
    const a = await addNode(t, "eph", key);
    const s = a.client.map(mapRequest(a));
    await s.next();
    // Cancelled right after the first message, while the server may still be writing to it.
    s.close();
    await until("a cancelled poll takes the node offline", () => !t.state.isOnline(a.id));
    // Reconnecting in time cancels the deletion.
    const s2 = a.client.map(mapRequest(a));
    await s2.next();
    await new Promise((r) => setTimeout(r, timeoutMs + 200));
    assert.ok(t.state.getNode(a.id), "online ephemeral node is kept");
    s2.close();
    await until("the offline ephemeral node is deleted", () => !t.state.getNode(a.id));
  } finally {
    await t.close();
  }
});

Deno.test("map: a key that expires reaches peers as a changed node", async () => {
  await setup(async (t, a, b) => {
    const sa = a.client.map(mapRequest(a));
    await sa.next();
    const sb = b.client.map(mapRequest(b));
    await sb.next();
    await t.state.setNodeExpiry(b.id, new Date(Date.now() + 300));
    const before = await nextMatching(sa, (m) => !!m.PeersChanged?.some((p) => p.ID === b.id));
    assert.equal(before.PeersChanged![0].Expired, undefined);
    const after = await nextMatching(
      sa,
      (m) => !!m.PeersChanged?.some((p) => p.ID === b.id && p.Expired === true),
    );
    assert.ok(Date.parse(after.PeersChanged![0].KeyExpiry!) <= Date.now());
    const self = await nextMatching(sb, (m) => m.Node?.Expired === true);
    assert.equal(self.Node!.ID, b.id);
    sa.close();
    sb.close();
  });
});

Deno.test("map: a dropped connection takes the node offline", async () => {
  await setup(async (t, a, b) => {
    const sa = a.client.map(mapRequest(a));
    await sa.next();
    const sb = b.client.map(mapRequest(b));
    await sb.next();
    assert.equal(t.state.isOnline(b.id), true);
    b.client.close(); // the whole connection goes, not just the stream
    const offline = await nextMatching(
      sa,
      (m) => !!m.PeersChangedPatch?.some((p) => p.NodeID === b.id && p.Online === false),
    );
    assert.ok(offline);
    assert.equal(t.state.isOnline(b.id), false);
    assert.equal(t.notifier.hasSession(b.id), false);
    sa.close();
  });
});
