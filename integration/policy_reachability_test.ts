/**
 * The policy engine proven with real clients: what a node can open on another node, which peers
 * each client lists, and both changing at runtime without restarting the clients.
 *
 * Services are HTTP servers on a node's loopback (userspace tailscaled forwards allowed inbound
 * TCP there); connections go through the source node's SOCKS5 proxy. See
 * support/node_services.ts.
 */
import assert from "node:assert/strict";
import {
  integrationSkipReason,
  peersOf,
  type TailscaleClient,
  waitFor,
  withHarness,
} from "./harness.ts";
import { type ControlServer, startControlServer } from "./support/control_server.ts";
import { aclDrops, type NodeHttpServer, probeHttp, serveHttp } from "./support/node_services.ts";
import { ipv4Of, waitForStatus } from "./support/tailnet.ts";
import { waitForHttp, waitForNoHttp } from "./support/reach.ts";

const skipReason = await integrationSkipReason();
if (skipReason) console.log(`policy reachability tests skipped: ${skipReason}`);
const ignore = skipReason !== undefined;

/** How long a policy change may take to reach the clients' filters and peer lists. */
const CHANGE_TIMEOUT_MS = 20_000;

/** Waits until `from` gets an HTTP answer from `to`'s service on `port`. */
function waitReachable(
  from: TailscaleClient,
  to: TailscaleClient,
  ip: string,
  port: number,
  timeoutMs = 30_000,
): Promise<void> {
  return waitForHttp(from, ip, port, `${to.name}:${port}`, timeoutMs);
}

/** Waits until `from` can no longer open `to`'s service on `ip:port`. */
function waitBlocked(
  from: TailscaleClient,
  _to: TailscaleClient,
  ip: string,
  port: number,
  timeoutMs = CHANGE_TIMEOUT_MS,
): Promise<void> {
  return waitForNoHttp(from, ip, port, timeoutMs);
}

/**
 * One attempt from `from` to `to`'s `port` must fail in bounded time (curl gives up after 3 s),
 * and `to`'s packet filter must have dropped it (its ACL drop counter moved): the policy refused
 * the connection, it was not lost on the way. With `noPeer` the source has no peer at that
 * address, so nothing leaves it.
 */
async function assertBlocked(
  from: TailscaleClient,
  to: TailscaleClient,
  ip: string,
  port: number,
  options: { noPeer?: boolean } = {},
): Promise<void> {
  const dropsBefore = await aclDrops(to);
  const probe = await probeHttp(from, ip, port);
  assert.equal(
    probe.connected,
    false,
    `${from.name} opened ${to.name}:${port} (${ip}), answered ${JSON.stringify(probe.body)}`,
  );
  const dropsAfter = await aclDrops(to);
  if (options.noPeer) {
    assert.equal(dropsAfter, dropsBefore, `${to.name} got no packet to drop`);
  } else {
    assert.ok(
      dropsAfter > dropsBefore,
      `${to.name}'s filter dropped nothing (${dropsBefore} ACL drops before and after): ` +
        `curl exit ${probe.exitCode}: ${probe.error}`,
    );
  }
}

/** The HostNames a client lists as peers, sorted. */
async function peerNames(client: TailscaleClient): Promise<string[]> {
  return peersOf(await client.status()).map((p) => p.HostName).sort();
}

/** Waits until `client` lists exactly `expected` as peers. */
async function waitForPeerNames(
  client: TailscaleClient,
  expected: readonly string[],
  timeoutMs = CHANGE_TIMEOUT_MS,
): Promise<void> {
  const want = [...expected].sort();
  await waitForStatus(
    client,
    (status) => {
      const names = peersOf(status).map((p) => p.HostName).sort();
      if (JSON.stringify(names) !== JSON.stringify(want)) {
        throw new Error(`peers are [${names.join(", ")}]`);
      }
    },
    `exactly the peers [${want.join(", ")}]`,
    timeoutMs,
  );
}

/** A call to the REST API on the server's main listener, with an API key. */
async function rest(
  server: ControlServer,
  apiKey: string,
  method: string,
  path: string,
  body?: unknown,
): Promise<{ status: number; json: Record<string, unknown> }> {
  const response = await fetch(`${server.url}${path}`, {
    method,
    headers: { authorization: `Bearer ${apiKey}`, "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
    signal: AbortSignal.timeout(15_000),
  });
  const text = await response.text();
  try {
    return { status: response.status, json: JSON.parse(text) };
  } catch {
    throw new Error(`${method} ${path}: ${response.status}, not JSON: ${text.slice(0, 300)}`);
  }
}

/** Alice may open bob's port 80; nothing else is allowed (carol is in nobody's policy). */
const ALICE_TO_BOB_80 = `{
  // alice's devices may open port 80 on bob's; nothing else
  "acls": [
    { "action": "accept", "src": ["alice@"], "dst": ["bob@:80"] },
  ],
}`;

/** Port 22 instead of 80 for alice, and carol may now open bob's port 80. */
const ALICE_TO_BOB_22_CAROL_TO_BOB_80 = `{
  "acls": [
    { "action": "accept", "src": ["alice@"], "dst": ["bob@:22"] },
    { "action": "accept", "src": ["carol@"], "dst": ["bob@:80"] },
  ],
  "tests": [
    { "src": "alice@", "accept": ["bob@:22"], "deny": ["bob@:80"] },
    { "src": "carol@", "accept": ["bob@:80"], "deny": ["bob@:22"] },
  ],
}`;

Deno.test({
  name: "policy: reachability and peer lists follow the policy set through the CLI and the API",
  ignore,
  fn: () =>
    withHarness({ name: "policy-database" }, async (h) => {
      const server = await startControlServer(h, {
        extraConfig: "policy:\n  mode: database",
      });
      for (const user of ["alice", "bob", "carol"]) await server.createUser(user);
      const apiKey = await server.cli<string>(["apikeys", "create", "--expiration", "1h"]);
      assert.equal(typeof apiKey, "string");

      // The first policy goes in through the CLI, before any node exists.
      const policyFile = `${h.workDir}/policy.hujson`;
      await Deno.writeTextFile(policyFile, ALICE_TO_BOB_80);
      await server.cli(["policy", "set", "-f", policyFile]);

      const [a, b, c] = await h.addClients(["node-a", "node-b", "node-c"]);
      await Promise.all([[a, "alice"], [b, "bob"], [c, "carol"]].map(async ([client, user]) => {
        const authKey = await server.createAuthKey(user as string);
        await (client as TailscaleClient).up({ loginServer: server.url, authKey });
      }));
      const [aIp, bIp, cIp] = await Promise.all([a, b, c].map(ipv4Of));

      const services: NodeHttpServer[] = [];
      try {
        services.push(
          await serveHttp(h, a, [80]),
          await serveHttp(h, b, [80, 22]),
          await serveHttp(h, c, [80]),
        );

        // --- Peer lists: A and B see each other, C sees nobody and nobody sees C.
        await Promise.all([a.waitForPeers(1, 30_000, { online: true }), b.waitForPeers(1)]);
        await waitForPeerNames(a, [b.name]);
        await waitForPeerNames(b, [a.name]);
        await waitForPeerNames(c, []);

        // --- A reaches B:80, and only that.
        await waitReachable(a, b, bIp, 80);
        await assertBlocked(a, b, bIp, 22);
        await assertBlocked(b, a, aIp, 80); // the reverse direction is not allowed
        await assertBlocked(c, b, bIp, 80, { noPeer: true }); // C has no peers at all
        await assertBlocked(a, c, cIp, 80, { noPeer: true });
        // Still true after all that traffic: C stayed out of every peer list.
        assert.deepEqual(await peerNames(a), [b.name]);
        assert.deepEqual(await peerNames(b), [a.name]);
        assert.deepEqual(await peerNames(c), []);

        // --- A new policy through the REST API changes all that, clients untouched.
        const set = await rest(server, apiKey, "PUT", "/api/v1/policy", {
          policy: ALICE_TO_BOB_22_CAROL_TO_BOB_80,
        });
        assert.equal(set.status, 200, `PUT /api/v1/policy: ${JSON.stringify(set.json)}`);
        assert.equal(set.json.policy, ALICE_TO_BOB_22_CAROL_TO_BOB_80);
        await waitReachable(a, b, bIp, 22, CHANGE_TIMEOUT_MS);
        await waitBlocked(a, b, bIp, 80);
        await waitForPeerNames(b, [a.name, c.name]);
        await waitForPeerNames(c, [b.name]);
        await waitReachable(c, b, bIp, 80, CHANGE_TIMEOUT_MS);
        await assertBlocked(c, b, bIp, 22);
        assert.deepEqual(await peerNames(a), [b.name], "A still does not see C");

        // --- Bad policies are refused with a clear message; the one in force stays.
        const refusals: Array<[string, string, RegExp]> = [
          ["a syntax error", `{ "acls": [ `, /HuJSON.*line 1, column 13/],
          [
            "an undefined tag",
            `{ "acls": [ { "action": "accept", "src": ["tag:nope"], "dst": ["*:*"] } ] }`,
            /tag:nope/,
          ],
          [
            "failing tests",
            ALICE_TO_BOB_22_CAROL_TO_BOB_80.replace(`"deny": ["bob@:80"]`, `"deny": ["bob@:22"]`),
            /tests failed/,
          ],
        ];
        for (const [what, policy, message] of refusals) {
          const refused = await rest(server, apiKey, "PUT", "/api/v1/policy", { policy });
          assert.equal(refused.status, 400, `${what}: ${JSON.stringify(refused.json)}`);
          assert.equal(refused.json.code, 3, `${what}: INVALID_ARGUMENT`);
          assert.match(String(refused.json.message), message, `${what}: the message`);
        }
        const current = await rest(server, apiKey, "GET", "/api/v1/policy");
        assert.equal(current.json.policy, ALICE_TO_BOB_22_CAROL_TO_BOB_80, "the old policy stays");
        await waitReachable(a, b, bIp, 22, 10_000);
        await waitReachable(c, b, bIp, 80, 10_000);
        await assertBlocked(a, b, bIp, 80);
        assert.deepEqual(await peerNames(a), [b.name]);
        assert.deepEqual(await peerNames(b), [a.name, c.name]);
      } finally {
        await Promise.all(services.map((s) => s.stop()));
      }
    }),
});

/** alice's devices may open port 80 on tag:web (tagOwners makes the tag a valid target). */
function webPolicy(ports: string, note = ""): string {
  return `{
  // ${note || `alice → tag:web:${ports}`}
  "tagOwners": { "tag:web": ["alice@"] },
  "acls": [
    { "action": "accept", "src": ["alice@"], "dst": ["tag:web:${ports}"] },
  ],
}
`;
}

/** The policy text the server has in force (`policy get`). */
async function policyInForce(server: ControlServer): Promise<string> {
  return (await server.cli<{ policy: string }>(["policy", "get"])).policy;
}

/** Waits until the server has `text` in force. */
async function waitForPolicy(server: ControlServer, text: string): Promise<void> {
  await waitFor(
    async () => (await policyInForce(server)) === text,
    CHANGE_TIMEOUT_MS,
    { description: "the server to load the new policy file" },
  );
}

Deno.test({
  name: "policy: file mode reloads on change and on SIGHUP, refusing a bad file",
  ignore,
  fn: () =>
    withHarness({ name: "policy-file" }, async (h) => {
      const policyDir = `${h.workDir}/policy`;
      await Deno.mkdir(policyDir, { recursive: true });
      const policyPath = `${policyDir}/policy.hujson`;
      await Deno.writeTextFile(policyPath, webPolicy("80"));
      const server = await startControlServer(h, {
        extraConfig: `policy:\n  mode: file\n  path: ${policyPath}`,
      });
      const serverProcess = h.servers.at(-1)!.process;
      await server.createUser("alice");
      const aliceKey = await server.createAuthKey("alice");
      const webKey = await server.createTaggedAuthKey("tag:web");
      const [a, b] = await h.addClients(["laptop-a", "web-b"]);
      await Promise.all([
        a.up({ loginServer: server.url, authKey: aliceKey }),
        b.up({ loginServer: server.url, authKey: webKey }),
      ]);
      const [aIp, bIp] = await Promise.all([a, b].map(ipv4Of));
      assert.deepEqual((await server.nodeByHostname(b.name)).tags, ["tag:web"]);

      const services: NodeHttpServer[] = [];
      try {
        services.push(await serveHttp(h, a, [80]), await serveHttp(h, b, [80, 22]));
        await waitForPeerNames(a, [b.name], 30_000);
        await waitForPeerNames(b, [a.name], 30_000);
        await waitReachable(a, b, bIp, 80);
        await assertBlocked(a, b, bIp, 22);
        await assertBlocked(b, a, aIp, 80);

        // Rewritten in place: the file watch reloads it.
        await Deno.writeTextFile(policyPath, webPolicy("22,80"));
        await waitForPolicy(server, webPolicy("22,80"));
        await waitReachable(a, b, bIp, 22, CHANGE_TIMEOUT_MS);

        // A bad file is refused, on change and on SIGHUP; the old policy stays (the log lines
        // are checked at the end: the harness writes the server's output when it exits).
        await Deno.writeTextFile(
          policyPath,
          `{ "acls": [ { "action": "accept", "src": ["tag:nope"], "dst": ["*:*"] } ] }`,
        );
        serverProcess.kill("SIGHUP");
        // Nothing outside the log shows a refusal: give both reloads (SIGHUP now, the watch's
        // 200 ms later) a moment before the next change.
        await new Promise((resolve) => setTimeout(resolve, 1_000));
        assert.ok(server.running, "the server survives a bad policy");
        assert.equal(await policyInForce(server), webPolicy("22,80"), "the old policy stays");
        await waitReachable(a, b, bIp, 22, 10_000);
        await waitReachable(a, b, bIp, 80, 10_000);

        // Replaced atomically (a new file renamed over it, as editors and config tools do).
        await Deno.writeTextFile(`${policyDir}/policy.tmp`, webPolicy("80", "22 closed again"));
        await Deno.rename(`${policyDir}/policy.tmp`, policyPath);
        await waitForPolicy(server, webPolicy("80", "22 closed again"));
        await waitBlocked(a, b, bIp, 22);
        await waitReachable(a, b, bIp, 80, 10_000);

        // The watch survives the replacement: the next in-place edit is seen too.
        await Deno.writeTextFile(policyPath, webPolicy("22", "only 22"));
        await waitForPolicy(server, webPolicy("22", "only 22"));
        await waitReachable(a, b, bIp, 22, CHANGE_TIMEOUT_MS);
        await waitBlocked(a, b, bIp, 80);
        await assertBlocked(a, b, bIp, 80);
        await assertBlocked(b, a, aIp, 80);
      } finally {
        await Promise.all(services.map((s) => s.stop()));
      }

      // What the server said about each reload (its log is complete once it has exited).
      await server.stop();
      const log = (await Deno.readTextFile(server.logPath)).split("\n");
      const lines = (pattern: RegExp) => log.filter((line) => pattern.test(line));
      assert.ok(lines(/policy reloaded.*reason="file changed"/).length >= 3, "reloads logged");
      for (const reason of [`"file changed"`, "SIGHUP"]) {
        const refused = lines(new RegExp(`policy was refused.*reason=${reason}`));
        assert.equal(refused.length, 1, `one refusal logged for ${reason}: ${refused}`);
        assert.match(refused[0], /tag:nope/, "the refusal says what is wrong");
        assert.match(refused[0], /ERROR/);
      }
    }),
});
