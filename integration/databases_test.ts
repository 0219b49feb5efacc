/**
 * One whole tailnet scenario on each database the server supports: clients register with a
 * pre-auth key and ping every pair, a subnet route is approved and carries a peer's requests,
 * a policy change takes the route's LAN away (the router's filter drops them) while the mesh
 * keeps pinging, and after a server restart everything written (nodes, approval, policy) is
 * still in force. The PostgreSQL run starts a server of its own (support/postgres.ts).
 */
import assert from "node:assert/strict";
import { type Harness, integrationSkipReason, withHarness } from "./harness.ts";
import { type ControlServerOptions, startControlServer } from "./support/control_server.ts";
import { serveHttpBehind } from "./support/node_services.ts";
import { postgresSkipReason, startPostgres } from "./support/postgres.ts";
import { assertNoHttp, waitForHttp, waitForNoHttp } from "./support/reach.ts";
import { assertAllPairsPing, assertMesh } from "./support/tailnet.ts";

const skipReason = await integrationSkipReason();
if (skipReason) console.log(`database scenario tests skipped: ${skipReason}`);
const pgSkip = skipReason ?? await postgresSkipReason();
if (!skipReason && pgSkip) console.log(`PostgreSQL scenario skipped: ${pgSkip}`);

const LAN = "10.77.5";
const ALLOW_ALL = `{ "acls": [{ "action": "accept", "src": ["*"], "dst": ["*:*"] }] }`;
/** Everything between the nodes, nothing behind the router. */
const TAILNET_ONLY =
  `{ "acls": [{ "action": "accept", "src": ["*"], "dst": ["100.64.0.0/10:*", "fd7a:115c:a1e0::/48:*"] }] }`;

async function scenario(h: Harness, database: Pick<ControlServerOptions, "postgres">) {
  const server = await startControlServer(h, {
    ...database,
    extraConfig: "policy:\n  mode: database",
    tls: true,
  });
  await server.createUser("alice");
  await server.setPolicy(ALLOW_ALL);
  const clients = await h.addClients(["db-a", "db-b", "db-router"], { env: server.clientEnv });
  const [a, , router] = clients;
  const lan = await h.addNetworkBehind(router, LAN);
  await serveHttpBehind(h, lan, 80, "lan");
  const key = await server.createAuthKey("alice", { reusable: true });
  await Promise.all(clients.map((c) =>
    c.up({
      loginServer: server.url,
      authKey: key,
      extraArgs: c === router ? [`--advertise-routes=${lan.subnet}`] : ["--accept-routes"],
    })
  ));

  // --- Registered, every pair pings.
  await assertMesh(server, clients);
  await assertAllPairsPing(clients);

  // --- A route approved: a reaches the LAN behind the router.
  const routerNode = await server.nodeByHostname(router.name);
  await server.approveRoutes(routerNode.id, [lan.subnet]);
  await waitForHttp(a, lan.namespace.address, 80, "lan");

  // --- A policy change: the LAN is out of reach (dropped by the router), the mesh is not.
  await server.setPolicy(TAILNET_ONLY);
  await waitForNoHttp(a, lan.namespace.address, 80);
  await assertNoHttp(a, lan.namespace.address, 80, router);
  await assertAllPairsPing(clients);

  // --- Restarted on the same database: nodes, approval and policy are what they were.
  const before = (await server.listNodes()).map((n) => [n.id, n.name, n.ipAddresses]);
  await server.restart();
  assert.deepEqual((await server.listNodes()).map((n) => [n.id, n.name, n.ipAddresses]), before);
  assert.deepEqual((await server.nodeByHostname(router.name)).approvedRoutes, [lan.subnet]);
  assert.equal((await server.cli<{ policy: string }>(["policy", "get"])).policy, TAILNET_ONLY);
  await assertMesh(server, clients, 120_000);
  await server.setPolicy(ALLOW_ALL);
  await waitForHttp(a, lan.namespace.address, 80, "lan");
}

Deno.test({
  name: "databases: register, ping, route, policy change and restart on SQLite",
  ignore: skipReason !== undefined,
  fn: () => withHarness({ name: "db-sqlite" }, (h) => scenario(h, {})),
});

Deno.test({
  name: "databases: register, ping, route, policy change and restart on PostgreSQL",
  ignore: pgSkip !== undefined,
  fn: () =>
    withHarness({ name: "db-postgres" }, async (h) => {
      const pg = await startPostgres(h);
      await scenario(h, { postgres: pg.settings });
    }),
});
