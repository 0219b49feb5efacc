/**
 * Switching from headscale without re-registering a device (issue 12), with real clients.
 *
 * headscale v0.29.2 itself (`headscale serve`) runs on the bridge with its own config on SQLite and
 * enrolls four tailscaled clients: one with a single-use pre-auth key, one advertising a subnet
 * route that headscale's CLI approves, one with a tagged key (tagOwners in a database policy), and
 * one whose expiry headscale's CLI sets. It also issues an API key and a reusable pre-auth key no
 * one uses. Then headscale stops, `migrate from-headscale` imports its database, and our server
 * starts with the same config file and key files on the same address.
 *
 * The clients are never restarted and never log in again: they must reach Running on our server
 * with their node ids, keys, addresses and names, see each other and ping every pair; the route
 * stays approved and primary, the tag and the expiry stay; headscale's Go CLI, with the API key
 * headscale issued, lists the nodes and routes on our server; the unused key enrolls a new client.
 */
import assert from "node:assert/strict";
import { integrationSkipReason, type TailscaleClient, waitFor, withHarness } from "./harness.ts";
import { runChecked } from "./harness/command.ts";
import { type ApiNode, ControlServer } from "./support/control_server.ts";
import { Headscale, headscaleBinary, writeSharedConfig } from "./support/headscale.ts";
import { opensslAvailable } from "./support/tls.ts";
import {
  assertAllPairsPing,
  assertMesh,
  assertPings,
  peerByHostName,
  waitForStatus,
} from "./support/tailnet.ts";

const harnessSkip = await integrationSkipReason() ??
  (await opensslAvailable() ? undefined : "needs the openssl CLI (a throwaway CA for https)");
const built = harnessSkip ? undefined : await headscaleBinary();
const skipReason = harnessSkip ?? built?.reason;
if (skipReason) console.log(`migrate from headscale test skipped: ${skipReason}`);
const binary = built?.path;

const ROUTE = "10.77.0.0/24";
const POLICY = JSON.stringify({
  tagOwners: { "tag:server": ["alice@"] },
  acls: [{ action: "accept", src: ["*"], dst: ["*:*"] }],
});

/** The parts of headscale's Node (Go JSON of the proto message: snake_case, numbers) we compare. */
interface HsNode {
  id: number | string;
  name: string;
  given_name: string;
  ip_addresses: string[];
  node_key: string;
  tags?: string[];
  expiry?: { seconds: number | string; nanos?: number };
  approved_routes?: string[];
  available_routes?: string[];
  subnet_routes?: string[];
}

interface HsPreAuthKey {
  key: string;
}

/** What a client knows about itself, which must not change across the switch. */
function identity(status: Awaited<ReturnType<TailscaleClient["status"]>>) {
  const self = status.Self;
  assert.ok(self, "tailscale status has no Self");
  return {
    id: self.ID,
    publicKey: self.PublicKey,
    ips: [...(status.TailscaleIPs ?? [])].sort(),
    dnsName: self.DNSName,
    tags: self.Tags ?? [],
    keyExpiry: self.KeyExpiry ?? null,
  };
}

const seconds = (iso: string | undefined) =>
  iso === undefined ? undefined : Math.floor(Date.parse(iso) / 1000);

Deno.test({
  name:
    "migrate: clients enrolled by headscale v0.29.2 keep working on our server after migrate from-headscale, nothing re-registered",
  ignore: skipReason !== undefined,
  fn: () =>
    withHarness({ name: "migrate-headscale" }, async (h) => {
      const config = await writeSharedConfig(h);
      const clientEnv = { SSL_CERT_FILE: config.ca.certPath };
      const loginServer = `https://${config.listen.hostPort}`;
      const [hs, clients] = await Promise.all([
        Headscale.start(h, binary!, config),
        h.addClients(["mig-plain", "mig-router", "mig-tagged", "mig-expiry", "mig-new"], {
          env: clientEnv,
        }),
      ]);
      const [plain, router, tagged, expiring, newcomer] = clients;
      const enrolled = [plain, router, tagged, expiring];

      // --- On headscale: a user, a policy in the database, keys.
      const alice = await hs.cli<{ id: number | string }>(["users", "create", "alice"]);
      const policyPath = `${config.dir}/policy.hujson`;
      await Deno.writeTextFile(policyPath, POLICY);
      const policySet = await hs.cliRaw(["policy", "set", "-f", policyPath]);
      assert.ok(policySet.success, `headscale policy set: ${policySet.stderr}${policySet.stdout}`);
      const newKey = async (args: string[]) =>
        (await hs.cli<HsPreAuthKey>(["preauthkeys", "create", ...args])).key;
      const user = ["-u", String(alice.id)];
      const singleUse = await newKey([...user, "-e", "1h"]);
      const shared = await newKey([...user, "--reusable", "-e", "1h"]);
      const tagKey = await newKey(["--tags", "tag:server", "-e", "1h"]);
      const unused = await newKey([...user, "--reusable", "-e", "24h"]);
      const apiKey = await hs.cli<string>(["apikeys", "create", "-e", "24h"]);
      assert.match(apiKey, /^hskey-api-/, "headscale's API key");

      await Promise.all([
        plain.up({ loginServer, authKey: singleUse }),
        router.up({ loginServer, authKey: shared, extraArgs: [`--advertise-routes=${ROUTE}`] }),
        tagged.up({ loginServer, authKey: tagKey }),
        expiring.up({ loginServer, authKey: shared }),
      ]);
      const hsNodes = await hs.cli<HsNode[]>(["nodes", "list"]);
      const hsNode = (name: string) => {
        const node = hsNodes.find((n) => n.name === name);
        assert.ok(node, `headscale lists no node ${name}: ${hsNodes.map((n) => n.name)}`);
        return node;
      };
      await hs.cli(["nodes", "approve-routes", "-i", String(hsNode(router.name).id), "-r", ROUTE]);
      const expiry = new Date(Math.floor(Date.now() / 1000) * 1000 + 2 * 3600_000);
      await hs.cli([
        "nodes",
        "expire",
        "-i",
        String(hsNode(expiring.name).id),
        "-e",
        expiry.toISOString().replace(/\.000Z$/, "Z"),
      ]);

      // headscale's tailnet works: everyone online, the route primary, the expiry delivered.
      await Promise.all(enrolled.map((c) => c.waitForPeers(3, 60_000, { online: true })));
      await waitForStatus(
        plain,
        (s) => peerByHostName(s, router.name)?.PrimaryRoutes?.includes(ROUTE),
        `${ROUTE} primary on ${router.name} (headscale)`,
      );
      await waitForStatus(
        expiring,
        (s) => seconds(s.Self?.KeyExpiry) === expiry.getTime() / 1000,
        `KeyExpiry ${expiry.toISOString()} (headscale)`,
      );
      const before = await Promise.all(enrolled.map(async (c) => identity(await c.status())));
      const headscaleView = (await hs.cli<HsNode[]>(["nodes", "list"]))
        .map((n) => ({ id: String(n.id), name: n.name, ips: [...n.ip_addresses].sort() }))
        .sort((a, b) => Number(a.id) - Number(b.id));

      // --- The switch, as docs/install.md describes it.
      const stopped = await hs.stop();
      assert.ok(stopped?.success, `headscale did not stop cleanly: ${JSON.stringify(stopped)}`);
      const source = `${config.dir}/headscale.sqlite`;
      for (const suffix of ["", "-wal", "-shm"]) {
        try {
          await Deno.rename(`${config.databasePath}${suffix}`, `${source}${suffix}`);
        } catch (e) {
          if (!(e instanceof Deno.errors.NotFound)) throw e;
        }
      }
      const migrate = (...extra: string[]) =>
        runChecked([
          Deno.execPath(),
          "run",
          "-A",
          new URL("../cli.ts", import.meta.url).pathname,
          "migrate",
          "from-headscale",
          "-c",
          config.configPath,
          "--from",
          source,
          ...extra,
        ], { cwd: config.dir, timeoutMs: 60_000 });
      const dryRun = await migrate("--dry-run");
      assert.match(dryRun, /nodes:\s+4 \(1 tagged\)/, dryRun);
      assert.match(dryRun, /every row can be imported/, dryRun);
      await migrate();

      const ours = await ControlServer.startWithConfig(h, {
        listen: config.listen,
        dir: config.dir,
        configPath: config.configPath,
        baseDomain: config.baseDomain,
        tls: { caCertPath: config.ca.certPath, caCertPem: config.ca.certPem },
      });

      // --- The same clients, untouched, on our server.
      // Online in our API means the client holds a map stream with our server: the netmap each
      // kept from headscale, and pings (which need no control server), would pass without one.
      // 180 s: a client retries its map request with a growing backoff while no server answers.
      await waitFor(
        async () => {
          const listed = await ours.listNodes();
          const offline = listed.filter((n) => !n.online).map((n) => n.name);
          if (listed.length !== 4 || offline.length > 0) {
            throw new Error(`${listed.length} nodes, offline: ${offline.join(", ") || "none"}`);
          }
          return true;
        },
        180_000,
        { description: "every enrolled node online on our server", intervalMs: 500 },
      );
      const nodes = await assertMesh(ours, enrolled);
      assert.deepEqual(
        nodes.map((n) => ({ id: n.id, name: n.name, ips: [...n.ipAddresses].sort() }))
          .sort((a, b) => Number(a.id) - Number(b.id)),
        headscaleView,
        "node ids, names and addresses as headscale had them",
      );
      const after = await Promise.all(enrolled.map(async (c) => identity(await c.status())));
      assert.deepEqual(after, before, "each client's own id, node key, addresses, name, tags");
      assert.ok(enrolled.every((c) => c.daemonRunning), "no tailscaled was restarted");
      await assertAllPairsPing(enrolled);

      const byName = new Map(nodes.map((n) => [n.name, n]));
      const routerNode = byName.get(router.name) as ApiNode;
      assert.deepEqual(routerNode.approvedRoutes, [ROUTE], "approved route");
      assert.deepEqual(routerNode.subnetRoutes, [ROUTE], "serving route");
      await waitForStatus(
        plain,
        (s) => peerByHostName(s, router.name)?.PrimaryRoutes?.includes(ROUTE),
        `${ROUTE} primary on ${router.name} (ours)`,
      );
      const taggedNode = byName.get(tagged.name) as ApiNode;
      assert.deepEqual(taggedNode.tags, ["tag:server"]);
      assert.equal(taggedNode.user, undefined, "a tagged node belongs to no user");
      assert.deepEqual((await tagged.status()).Self?.Tags, ["tag:server"]);
      const expiringNode = byName.get(expiring.name) as ApiNode;
      assert.equal(seconds(expiringNode.expiry), expiry.getTime() / 1000, "expiry in the API");
      assert.equal(
        seconds((await expiring.status()).Self?.KeyExpiry),
        expiry.getTime() / 1000,
        "KeyExpiry on the client",
      );

      // headscale's Go CLI, remotely with the API key headscale issued, against our server.
      const remote = await hs.cli<HsNode[]>(["nodes", "list"], { apiKey });
      assert.deepEqual(
        remote.map((n) => ({ id: String(n.id), name: n.name, ips: [...n.ip_addresses].sort() }))
          .sort((a, b) => Number(a.id) - Number(b.id)),
        headscaleView,
        "headscale's CLI lists the same nodes on our server",
      );
      const routes = await hs.cli<HsNode[]>(["nodes", "list-routes"], { apiKey });
      const listed = routes.find((n) => n.name === router.name);
      assert.deepEqual(listed?.approved_routes, [ROUTE], `list-routes: ${JSON.stringify(routes)}`);
      assert.deepEqual(listed?.subnet_routes, [ROUTE], "list-routes: serving");

      // The reusable key no one used enrolls a new client here, and every old client learns of
      // it: only a live map stream from our server can have told them.
      await newcomer.up({ loginServer: ours.url, authKey: unused });
      const everyone = await assertMesh(ours, [...enrolled, newcomer], 60_000);
      const newId = Number(everyone.find((n) => n.name === newcomer.name)?.id);
      assert.ok(
        newId > Math.max(...headscaleView.map((n) => Number(n.id))),
        `the newcomer gets a new id: ${newId}`,
      );
      await assertPings(newcomer, plain);
      await assertPings(tagged, newcomer);
    }),
});
