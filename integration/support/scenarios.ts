/**
 * Scenarios shared by the tests for each client version: a registered mesh where every pair
 * pings, and a server restart that the tailnet survives.
 */
import assert from "node:assert/strict";
import type { Harness, TailscaleClient, TailscaleVersion } from "../harness.ts";
import type { ApiNode, ControlServer } from "./control_server.ts";
import { assertAllPairsPing, assertMesh, upAll } from "./tailnet.ts";

/** Registers `clients` with `authKey`, checks everyone's view against the API, pings all pairs. */
export async function assertMeshScenario(
  server: ControlServer,
  clients: readonly TailscaleClient[],
  authKey: string,
): Promise<ApiNode[]> {
  await upAll(server, clients, authKey);
  const nodes = await assertMesh(server, clients);
  await assertAllPairsPing(clients);
  return nodes;
}

function idsAndIps(nodes: readonly ApiNode[], names: readonly string[]) {
  return names.map((name) => {
    const node = nodes.find((n) => n.name === name);
    assert.ok(node, `the API lists no node ${name}`);
    return { name, id: node.id, ips: [...node.ipAddresses].sort() };
  });
}

/**
 * Restarts the server under a registered mesh. Afterwards the clients must keep their node ids
 * and addresses, and their map streams must be live again: a client that registers after the
 * restart (`newcomer`, version `newcomerVersion`) must show up in every one's netmap, and every
 * pair, newcomer included, must ping.
 */
export async function assertRestartScenario(
  h: Harness,
  server: ControlServer,
  clients: readonly TailscaleClient[],
  authKey: string,
  newcomer: { name: string; version?: TailscaleVersion },
): Promise<void> {
  const names = clients.map((c) => c.name);
  const before = idsAndIps(await server.listNodes(), names);
  const ipsBefore = await Promise.all(clients.map((c) => c.ips()));

  await server.restart();
  const late = await h.addClient(newcomer.name, {
    version: newcomer.version,
    env: server.clientEnv,
  });
  // As generous as the mesh wait below: in CI a v1.80 newcomer once stayed short of Running for
  // the default 60 s while the old clients were still waiting out their dial deadlines.
  await late.up({ loginServer: server.url, authKey, timeoutMs: 180_000 });
  const everyone = [...clients, late];
  // Every old client sees the newcomer online: only a live map stream can have told it. The
  // generous wait is for v1.80 clients: after a dial is refused while the server restarts, their
  // next dials are HTTPS-only and a refused one waits out its 10 s deadline before the retry; and
  // a poll stuck on a dead connection is only abandoned by the client's 120 s map watchdog.
  const nodes = await assertMesh(server, everyone, 180_000);
  assert.deepEqual(idsAndIps(nodes, names), before, "node ids and addresses survive the restart");
  assert.deepEqual(await Promise.all(clients.map((c) => c.ips())), ipsBefore, "tailscale ip");
  assert.ok(
    nodes.every((n) => n.online),
    `all nodes online after the restart: ${nodes.map((n) => `${n.name}=${n.online}`).join(" ")}`,
  );
  await assertAllPairsPing(everyone);
}
