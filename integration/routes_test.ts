/**
 * Subnet routers and exit nodes with real clients. A router's namespace has a "LAN" behind it (a
 * namespace joined to the router's alone, see TestNetwork.addNetworkBehind) with an HTTP server;
 * an exit node has an "internet" (198.51.100.0/24) one hop behind it the same way. Other namespaces have
 * no route there: they reach those servers through the router or exit node or not at all.
 * Connections leave through each client's SOCKS5 proxy (userspace tailscaled), so what the
 * client's netmap routes is what the test observes.
 */
import assert from "node:assert/strict";
import {
  integrationSkipReason,
  type NetworkBehind,
  peersOf,
  type TailscaleClient,
  type TailscaleStatus,
  waitFor,
  withHarness,
} from "./harness.ts";
import { type ApiNode, startControlServer } from "./support/control_server.ts";
import { probeHttp, serveHttpBehind } from "./support/node_services.ts";
import { assertNoHttp, waitForHttp, waitForNoHttp, waitForTunnel } from "./support/reach.ts";
import { peerByHostName, waitForStatus } from "./support/tailnet.ts";

const skipReason = await integrationSkipReason();
if (skipReason) console.log(`route tests skipped: ${skipReason}`);
const ignore = skipReason !== undefined;

/** How long an approval or a policy change may take to reach the clients. */
const CHANGE_TIMEOUT_MS = 20_000;
/**
 * How long after a primary router's tailscaled is killed its peers may still fail to reach the
 * LAN: the kernel closes its connections, the server sees the map stream end and elects the
 * other router at once, peers get the new PrimaryRoutes in the next batch.
 */
const FAILOVER_BOUND_MS = 5_000;

const LAN1 = "10.77.1";
const LAN2 = "10.77.2";
/**
 * The "internet" is one hop past the exit node (TEST-NET-1 between them): an exit node does not
 * carry traffic to its own directly connected networks (see TestNetwork.addNetworkBehind).
 */
const UPLINK = "192.0.2";
const INTERNET = "198.51.100";

/** The route columns of one node in `nodes list-routes`. */
function routesOf(listed: ApiNode[], name: string) {
  const node = listed.find((n) => n.name === name);
  return {
    available: [...node?.availableRoutes ?? []].sort(),
    approved: [...node?.approvedRoutes ?? []].sort(),
    serving: [...node?.subnetRoutes ?? []].sort(),
  };
}

/** Waits until `viewer` shows `hostname` with exactly `routes` as PrimaryRoutes. */
function waitForPrimaryRoutes(
  viewer: TailscaleClient,
  hostname: string,
  routes: readonly string[],
): Promise<TailscaleStatus> {
  const want = [...routes].sort();
  return waitForStatus(
    viewer,
    (status) => {
      const peer = peerByHostName(status, hostname);
      if (!peer) throw new Error(`no peer ${hostname}`);
      const got = [...peer.PrimaryRoutes ?? []].sort();
      assert.deepEqual(got, want, `${hostname}'s PrimaryRoutes`);
    },
    `${hostname} with PrimaryRoutes [${want.join(", ")}]`,
    CHANGE_TIMEOUT_MS,
  );
}

async function lanBehind(
  h: Parameters<Parameters<typeof withHarness>[1]>[0],
  gateway: TailscaleClient,
  prefix: string,
  body: string,
  options: { beyond?: string } = {},
): Promise<NetworkBehind> {
  const net = await h.addNetworkBehind(gateway, prefix, options);
  await serveHttpBehind(h, net, 80, body);
  return net;
}

function routerPolicy(extra = ""): string {
  return `{
  "tagOwners": { "tag:router": ["admin@"] },
  "acls": [
    // alice may reach both LANs; bob may reach the router itself, nothing behind it
    { "action": "accept", "src": ["alice@"], "dst": ["${LAN1}.0/24:*", "${LAN2}.0/24:*"] },
    { "action": "accept", "src": ["bob@"], "dst": ["tag:router:*"] },
  ],
  ${extra}
}`;
}

Deno.test({
  name:
    "routes: a subnet router's LAN is reached after approve-routes or autoApprovers, by the users the policy allows",
  ignore,
  fn: () =>
    withHarness({ name: "routes-subnet" }, async (h) => {
      // https, so the embedded DERP relay works: a tunnel's first WireGuard handshake goes through
      // it at once instead of waiting out a lost one (5 s).
      const server = await startControlServer(h, {
        extraConfig: "policy:\n  mode: database",
        tls: true,
      });
      for (const user of ["admin", "alice", "bob"]) await server.createUser(user);
      await server.setPolicy(routerPolicy());
      const [router, alice, bob] = await h.addClients(["router", "alice", "bob"], {
        env: server.clientEnv,
      });
      const lan1 = await lanBehind(h, router, LAN1, "lan-1");
      const lan2 = await lanBehind(h, router, LAN2, "lan-2");
      const routerKey = await server.createTaggedAuthKey("tag:router");
      await Promise.all([
        router.up({
          loginServer: server.url,
          authKey: routerKey,
          extraArgs: [`--advertise-routes=${lan1.subnet}`],
        }),
        ...[[alice, "alice"], [bob, "bob"]].map(async ([c, user]) =>
          (c as TailscaleClient).up({
            loginServer: server.url,
            authKey: await server.createAuthKey(user as string),
            extraArgs: ["--accept-routes"],
          })
        ),
      ]);
      const lanHost = lan1.namespace.address;

      // --- Announced, not approved: listed as available only; nobody reaches the LAN.
      await waitFor(
        async () => {
          const r = routesOf(await server.listRoutes(), router.name);
          assert.deepEqual(r, { available: [lan1.subnet], approved: [], serving: [] });
          return true;
        },
        CHANGE_TIMEOUT_MS,
        { description: "the announced route in nodes list-routes" },
      );
      // bob may reach the router itself: a peer without routes. alice may reach only what is
      // behind it, which it does not serve yet: the router is not even her peer.
      await waitForPrimaryRoutes(bob, router.name, []);
      assert.equal(peerByHostName(await alice.status(), router.name), undefined);
      await Promise.all([assertNoHttp(alice, lanHost, 80), assertNoHttp(bob, lanHost, 80)]);

      // --- Approved with the CLI: alice reaches the LAN through the router; bob's packets are
      // dropped by the router's filter (he may reach the router, not what is behind it).
      const routerNode = await server.nodeByHostname(router.name);
      const approved = await server.approveRoutes(routerNode.id, [lan1.subnet]);
      assert.deepEqual(approved.approvedRoutes, [lan1.subnet]);
      assert.deepEqual(
        routesOf(await server.listRoutes(), router.name),
        { available: [lan1.subnet], approved: [lan1.subnet], serving: [lan1.subnet] },
      );
      await waitForPrimaryRoutes(alice, router.name, [lan1.subnet]);
      await waitForHttp(alice, lanHost, 80, "lan-1");
      await assertNoHttp(bob, lanHost, 80, router);

      // --- autoApprovers: the router announces a second LAN; the policy approves it on sight.
      await server.setPolicy(routerPolicy(
        `"autoApprovers": { "routes": { "${LAN2}.0/24": ["tag:router"] } },`,
      ));
      await router.cliChecked(["set", `--advertise-routes=${lan1.subnet},${lan2.subnet}`]);
      await waitForPrimaryRoutes(alice, router.name, [lan1.subnet, lan2.subnet]);
      assert.deepEqual(routesOf(await server.listRoutes(), router.name), {
        available: [lan1.subnet, lan2.subnet],
        approved: [lan1.subnet, lan2.subnet],
        serving: [lan1.subnet, lan2.subnet],
      });
      await waitForHttp(alice, lan2.namespace.address, 80, "lan-2");
      await assertNoHttp(bob, lan2.namespace.address, 80, router);

      // --- The approval withdrawn: the route is gone from alice's netmap and the LAN with it.
      await server.approveRoutes(routerNode.id, [lan2.subnet]);
      await waitForPrimaryRoutes(alice, router.name, [lan2.subnet]);
      await waitForNoHttp(alice, lanHost, 80, CHANGE_TIMEOUT_MS);
      await waitForHttp(alice, lan2.namespace.address, 80, "lan-2");
    }),
});

function exitPolicy(extra = ""): string {
  return `{
  "tagOwners": { "tag:exit": ["admin@"] },
  "acls": [
    // alice may use exit nodes; bob may reach the exit node itself, not the internet through it
    { "action": "accept", "src": ["alice@"], "dst": ["autogroup:internet:*"] },
    { "action": "accept", "src": ["bob@"], "dst": ["tag:exit:*"] },
  ],
  ${extra}
}`;
}

/**
 * Waits until `viewer` may pick `hostname` as its exit node (`offered`), or may not: the peer
 * lists ExitNodeOption false, or is no peer at all (alice sees exit nodes only).
 */
function waitForExitNodeOption(
  viewer: TailscaleClient,
  hostname: string,
  offered: boolean,
): Promise<TailscaleStatus> {
  return waitForStatus(
    viewer,
    (status) => {
      const peer = peerByHostName(status, hostname);
      if (!peer && offered) throw new Error(`no peer ${hostname}`);
      return (peer?.ExitNodeOption ?? false) === offered;
    },
    `${hostname} ${offered ? "offered" : "not offered"} as an exit node`,
    CHANGE_TIMEOUT_MS,
  );
}

Deno.test({
  name:
    "routes: an exit node approved with the CLI or autoApprovers.exitNode carries the internet for the users autogroup:internet allows",
  ignore,
  fn: () =>
    withHarness({ name: "routes-exit" }, async (h) => {
      const server = await startControlServer(h, {
        extraConfig: "policy:\n  mode: database",
        tls: true,
      });
      for (const user of ["admin", "alice", "bob"]) await server.createUser(user);
      await server.setPolicy(exitPolicy());
      const [exit, alice, bob] = await h.addClients(["exit", "alice", "bob"], {
        env: server.clientEnv,
      });
      const internet = await lanBehind(h, exit, UPLINK, "internet", { beyond: INTERNET });
      const site = internet.namespace.address;
      await Promise.all([
        exit.up({
          loginServer: server.url,
          authKey: await server.createTaggedAuthKey("tag:exit"),
          extraArgs: ["--advertise-exit-node"],
        }),
        alice.up({ loginServer: server.url, authKey: await server.createAuthKey("alice") }),
        bob.up({ loginServer: server.url, authKey: await server.createAuthKey("bob") }),
      ]);
      const exitRoutes = ["0.0.0.0/0", "::/0"];

      // --- Announced, not approved: not an exit node for anyone, the internet out of reach.
      await waitFor(
        async () => {
          const r = routesOf(await server.listRoutes(), exit.name);
          assert.deepEqual(r, { available: exitRoutes, approved: [], serving: [] });
          return true;
        },
        CHANGE_TIMEOUT_MS,
        { description: "the announced exit routes in nodes list-routes" },
      );
      await waitForExitNodeOption(bob, exit.name, false);
      const refused = await bob.cli(["set", `--exit-node=${exit.name}`]);
      assert.equal(refused.success, false, "bob could pick an unapproved exit node");
      assert.match(refused.stderr, /is not advertising an exit node/);
      assert.equal((await alice.cli(["set", `--exit-node=${exit.name}`])).success, false);
      await Promise.all([assertNoHttp(alice, site, 80), assertNoHttp(bob, site, 80)]);

      // --- Approved with the CLI: alice's traffic to the internet goes through the exit node.
      const exitNode = await server.nodeByHostname(exit.name);
      await server.approveRoutes(exitNode.id, exitRoutes);
      assert.deepEqual(routesOf(await server.listRoutes(), exit.name), {
        available: exitRoutes,
        approved: exitRoutes,
        serving: exitRoutes,
      });
      await waitForExitNodeOption(alice, exit.name, true);
      await assertNoHttp(alice, site, 80); // not chosen yet: no route to it
      await alice.cliChecked(["set", `--exit-node=${exit.name}`]);
      const using = await alice.status();
      assert.equal(peerByHostName(using, exit.name)?.ExitNode, true, "alice's ExitNode");
      await waitForHttp(alice, site, 80, "internet");

      // bob may pick it (he sees it, and it offers exit routes), but autogroup:internet does
      // not include him: the exit node's filter drops his packets.
      await waitForExitNodeOption(bob, exit.name, true);
      await bob.cliChecked(["set", `--exit-node=${exit.name}`]);
      await assertNoHttp(bob, site, 80, exit);

      // Without the exit node, alice is back to no route.
      await alice.cliChecked(["set", "--exit-node="]);
      await waitForNoHttp(alice, site, 80, CHANGE_TIMEOUT_MS);

      // --- autoApprovers.exitNode: approval withdrawn, then given back by the policy alone.
      await server.approveRoutes(exitNode.id, []);
      await waitForExitNodeOption(alice, exit.name, false);
      await server.setPolicy(exitPolicy(`"autoApprovers": { "exitNode": ["tag:exit"] },`));
      await waitForExitNodeOption(alice, exit.name, true);
      assert.deepEqual(routesOf(await server.listRoutes(), exit.name).approved, exitRoutes);
      await alice.cliChecked(["set", `--exit-node=${exit.name}`]);
      await waitForHttp(alice, site, 80, "internet");
    }),
});

const HA_LAN = "10.77.9";

function haPolicy(): string {
  return `{
  "tagOwners": { "tag:router": ["admin@"] },
  "acls": [{ "action": "accept", "src": ["alice@"], "dst": ["${HA_LAN}.0/24:*"] }],
  "autoApprovers": { "routes": { "${HA_LAN}.0/24": ["tag:router"] } },
}`;
}

/** Which router carries the prefix for `viewer` now: the peer listing it in PrimaryRoutes. */
async function primaryFor(viewer: TailscaleClient, prefix: string): Promise<string[]> {
  const status = await viewer.status();
  return peersOf(status)
    .filter((p) => (p.PrimaryRoutes ?? []).includes(prefix))
    .map((p) => p.HostName);
}

Deno.test({
  name:
    "routes: HA subnet routers — the primary's tailscaled killed, peers reach the LAN through the other within seconds; it comes back without taking the route back",
  ignore,
  fn: () =>
    withHarness({ name: "routes-ha" }, async (h) => {
      const server = await startControlServer(h, {
        extraConfig: "policy:\n  mode: database",
        tls: true,
      });
      for (const user of ["admin", "alice"]) await server.createUser(user);
      await server.setPolicy(haPolicy());
      const [r1, r2, alice] = await h.addClients(["router-1", "router-2", "alice"], {
        env: server.clientEnv,
      });
      // The same LAN behind each router, its server saying which way the request came.
      const [lan1, lan2] = await Promise.all([
        lanBehind(h, r1, HA_LAN, "via-router-1"),
        lanBehind(h, r2, HA_LAN, "via-router-2"),
      ]);
      const prefix = lan1.subnet;
      const host = lan1.namespace.address;
      assert.equal(lan2.namespace.address, host);
      const upRouter = async (r: TailscaleClient) =>
        r.up({
          loginServer: server.url,
          authKey: await server.createTaggedAuthKey("tag:router"),
          extraArgs: [`--advertise-routes=${prefix}`],
        });
      await upRouter(r1); // first: the lower node id, elected primary
      await Promise.all([
        upRouter(r2),
        alice.up({
          loginServer: server.url,
          authKey: await server.createAuthKey("alice"),
          extraArgs: ["--accept-routes"],
        }),
      ]);

      // --- Both approved (autoApprovers), router-1 primary: it alone serves the prefix.
      await waitForStatus(
        alice,
        (s) => peersOf(s).filter((p) => p.Online).length === 2,
        "both routers online",
        CHANGE_TIMEOUT_MS,
      );
      await waitFor(
        async () => {
          assert.deepEqual(await primaryFor(alice, prefix), [r1.name]);
          return true;
        },
        CHANGE_TIMEOUT_MS,
        { description: `alice: ${r1.name} primary for ${prefix}` },
      );
      const listed = await server.listRoutes();
      assert.deepEqual(routesOf(listed, r1.name), {
        available: [prefix],
        approved: [prefix],
        serving: [prefix],
      });
      assert.deepEqual(routesOf(listed, r2.name), {
        available: [prefix],
        approved: [prefix],
        serving: [],
      });
      await waitForHttp(alice, host, 80, "via-router-1");
      await waitForTunnel(alice, r2); // so the switch does not wait on a first handshake

      // --- router-1's tailscaled dies: alice reaches the LAN through router-2.
      const killed = Date.now();
      await r1.killDaemon();
      await waitForHttp(alice, host, 80, "via-router-2", FAILOVER_BOUND_MS);
      const failoverMs = Date.now() - killed;
      assert.deepEqual(await primaryFor(alice, prefix), [r2.name]);
      assert.deepEqual(routesOf(await server.listRoutes(), r2.name).serving, [prefix]);
      assert.deepEqual(routesOf(await server.listRoutes(), r1.name).serving, []);

      // --- router-1 returns: it is online again, and router-2 keeps the route (no flapping).
      await r1.startDaemon();
      await waitForStatus(
        alice,
        (s) => peerByHostName(s, r1.name)?.Online === true,
        `${r1.name} online again`,
        CHANGE_TIMEOUT_MS,
      );
      for (let i = 0; i < 5; i++) {
        assert.deepEqual(await primaryFor(alice, prefix), [r2.name], `check ${i}: primary`);
        const probe = await probeHttp(alice, host, 80);
        assert.equal(probe.body, "via-router-2", `check ${i}: ${JSON.stringify(probe)}`);
      }
      assert.deepEqual(routesOf(await server.listRoutes(), r1.name).serving, []);
      console.log(`failover after ${failoverMs} ms`);
    }),
});

/** node.routes.ha for the probing test: the smallest values the server accepts. */
const PROBE_INTERVAL_MS = 2_000;
const PROBE_TIMEOUT_MS = 1_000;

Deno.test({
  name:
    "routes: HA probing — a primary router that stops answering pings loses the route while its map stream stays open, and does not take it back when it answers again",
  ignore,
  fn: () =>
    withHarness({ name: "routes-ha-probe" }, async (h) => {
      const server = await startControlServer(h, {
        extraConfig: "policy:\n  mode: database",
        node: [
          "routes:",
          "  ha:",
          `    probe_interval: ${PROBE_INTERVAL_MS / 1000}s`,
          `    probe_timeout: ${PROBE_TIMEOUT_MS / 1000}s`,
        ],
        tls: true, // the clients answer pings with a HEAD to server_url, over TLS here
      });
      for (const user of ["admin", "alice"]) await server.createUser(user);
      await server.setPolicy(haPolicy());
      const [r1, r2, alice] = await h.addClients(["router-1", "router-2", "alice"], {
        env: server.clientEnv,
      });
      const [lan1] = await Promise.all([
        lanBehind(h, r1, HA_LAN, "via-router-1"),
        lanBehind(h, r2, HA_LAN, "via-router-2"),
      ]);
      const prefix = lan1.subnet;
      const host = lan1.namespace.address;
      const upRouter = async (r: TailscaleClient) =>
        r.up({
          loginServer: server.url,
          authKey: await server.createTaggedAuthKey("tag:router"),
          extraArgs: [`--advertise-routes=${prefix}`],
        });
      await upRouter(r1);
      await Promise.all([
        upRouter(r2),
        alice.up({
          loginServer: server.url,
          authKey: await server.createAuthKey("alice"),
          extraArgs: ["--accept-routes"],
        }),
      ]);
      await waitFor(
        async () => {
          assert.deepEqual(await primaryFor(alice, prefix), [r1.name]);
          return true;
        },
        CHANGE_TIMEOUT_MS,
        { description: `alice: ${r1.name} primary for ${prefix}` },
      );
      await waitForHttp(alice, host, 80, "via-router-1");
      await waitForTunnel(alice, r2);
      // --- router-1 hangs (SIGSTOP): its connections stay open, it answers nothing. Detection
      // takes at most a probe interval plus the timeout once its session is a cycle old (a
      // younger one's silence is not held against it yet): the test allows four intervals.
      r1.signalDaemon("SIGSTOP");
      const hung = Date.now();
      try {
        await waitForHttp(alice, host, 80, "via-router-2", 4 * PROBE_INTERVAL_MS);
        const failoverMs = Date.now() - hung;
        // The server still has router-1's map stream: only the probe took the route away.
        const r1Node = await server.nodeByHostname(r1.name);
        assert.equal(r1Node.online, true, "router-1's map stream looks alive");
        assert.deepEqual(routesOf(await server.listRoutes(), r1.name).serving, []);
        assert.deepEqual(routesOf(await server.listRoutes(), r2.name).serving, [prefix]);
        assert.match(
          await Deno.readTextFile(server.logPath),
          /HA probe: router did not answer/,
        );
        console.log(`failover of a hung router after ${failoverMs} ms`);
      } finally {
        r1.signalDaemon("SIGCONT");
      }

      // --- router-1 answers again: healthy, but router-2 keeps the route through two cycles.
      await waitForStatus(
        alice,
        (s) => peerByHostName(s, r1.name)?.Online === true,
        `${r1.name} online`,
        CHANGE_TIMEOUT_MS,
      );
      const until = Date.now() + 2 * PROBE_INTERVAL_MS + PROBE_TIMEOUT_MS;
      while (Date.now() < until) {
        assert.deepEqual(await primaryFor(alice, prefix), [r2.name], "no flapping back");
        const probe = await probeHttp(alice, host, 80);
        assert.equal(probe.body, "via-router-2", JSON.stringify(probe));
      }
      assert.deepEqual(routesOf(await server.listRoutes(), r2.name).serving, [prefix]);
    }),
});
