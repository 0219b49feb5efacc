/**
 * DNS as real clients resolve it: MagicDNS names of every peer (FQDN through the client's own
 * resolver, short names through its SOCKS5 proxy), a rename, and extra records from
 * `dns.extra_records_path` changing on running clients. See support/dns.ts.
 */
import assert from "node:assert/strict";
import { integrationSkipReason, type TailscaleClient, waitFor, withHarness } from "./harness.ts";
import { type ControlServer, startControlServer } from "./support/control_server.ts";
import {
  answerBodies,
  dnsQuery,
  dnsStatus,
  startDnsServer,
  waitForDnsAnswer,
} from "./support/dns.ts";
import { serveHttp } from "./support/node_services.ts";
import { waitForHttp } from "./support/reach.ts";
import { assertMesh } from "./support/tailnet.ts";

const skipReason = await integrationSkipReason();
if (skipReason) console.log(`dns tests skipped: ${skipReason}`);
const ignore = skipReason !== undefined;

const records = (value: string) =>
  JSON.stringify([{ name: "db.example.test", type: "A", value }], null, 2) + "\n";

Deno.test({
  name:
    "dns: every client resolves every peer's MagicDNS name, a rename within seconds, and extra records edited on disk",
  ignore,
  fn: () =>
    withHarness({ name: "dns-magic" }, async (h) => {
      const recordsPath = `${h.workDir}/extra-records.json`;
      await Deno.writeTextFile(recordsPath, records("192.0.2.53"));
      const server = await startControlServer(h, {
        tls: true,
        // A global resolver (nothing answers there): without one, v1.80 in userspace mode needs
        // the OS's DNS config to forward other names, cannot read it, and then answers nothing,
        // MagicDNS names included (ServerFailure). v1.102 answers MagicDNS names either way.
        dns: [
          `extra_records_path: ${recordsPath}`,
          "override_local_dns: true",
          "nameservers:",
          "  global: [192.0.2.1]",
        ],
      });
      await server.createUser("alice");
      const key = await server.createAuthKey("alice", { reusable: true });
      const clients = await h.addClients(["dns-a", "dns-b", "dns-c"], { env: server.clientEnv });
      await Promise.all(clients.map((c) => c.up({ loginServer: server.url, authKey: key })));
      const nodes = await assertMesh(server, clients);
      const nodeOf = (name: string) => nodes.find((n) => n.name === name)!;
      const domain = server.baseDomain;

      // --- Every client resolves every node's name (itself too) to its IPv4 address. (Clients
      // answer AAAA for a name only when the node has no IPv4 address: tailscale#1152.)
      await Promise.all(clients.map(async (viewer) => {
        for (const target of clients) {
          const node = nodeOf(target.name);
          const v4 = node.ipAddresses.filter((a) => !a.includes(":"));
          await waitForDnsAnswer(viewer, `${node.givenName}.${domain}.`, "A", v4);
        }
      }));

      // --- A short name, through the client's SOCKS5 proxy, reaches the right node.
      const [a, b] = clients;
      const web = await serveHttp(h, b, [80]);
      try {
        await waitForHttp(a, "dns-b", 80, "dns-b:80");

        // --- A rename is resolvable within seconds; the old name is gone.
        const bNode = nodeOf(b.name);
        const bV4 = bNode.ipAddresses.filter((x) => !x.includes(":"));
        const started = Date.now();
        await server.cli(["nodes", "rename", "--identifier", bNode.id, "www"]);
        await waitForDnsAnswer(a, `www.${domain}.`, "A", bV4, 10_000);
        const renameMs = Date.now() - started;
        await waitForDnsAnswer(a, `dns-b.${domain}.`, "A", null, 10_000);
        await waitForHttp(a, "www", 80, "dns-b:80", 10_000);
        console.log(`rename resolvable after ${renameMs} ms`);
      } finally {
        await web.stop();
      }

      // --- Extra records: resolvable, changed on disk without a restart, a broken file keeps them.
      await Promise.all(
        clients.map((c) => waitForDnsAnswer(c, "db.example.test", "A", ["192.0.2.53"])),
      );
      await Deno.writeTextFile(recordsPath, records("192.0.2.54"));
      await Promise.all(
        clients.map((c) => waitForDnsAnswer(c, "db.example.test", "A", ["192.0.2.54"])),
      );
      await Deno.writeTextFile(recordsPath, `[{ "name": "db.example.test", `);
      await waitFor(
        async () =>
          (await Deno.readTextFile(server.logPath)).includes("dns extra records not loaded"),
        10_000,
        { description: "the server to refuse the broken extra records file" },
      );
      assert.deepEqual(answerBodies(await dnsQuery(a, "db.example.test"), "A"), ["192.0.2.54"]);
      assert.ok(server.running, "the server survives a broken records file");
      await Deno.writeTextFile(recordsPath, records("192.0.2.55"));
      await waitForDnsAnswer(a, "db.example.test", "A", ["192.0.2.55"]);
    }),
});

Deno.test({
  name:
    "dns: global and split resolvers, search domains and extra_records show in tailscale dns status and answer queries, with and without override_local_dns",
  ignore,
  fn: () =>
    withHarness({ name: "dns-resolvers" }, async (h) => {
      // Two resolvers on the bridge; each answers every A query with an address of its own.
      const [global, corp] = await Promise.all([
        startDnsServer(h, "192.0.2.101"),
        startDnsServer(h, "192.0.2.102"),
      ]);
      const dnsSection = (override: boolean) => [
        `override_local_dns: ${override}`,
        "nameservers:",
        `  global: [${global.address}]`,
        "  split:",
        `    corp.example: [${corp.address}]`,
        "search_domains: [corp.example, lab.example]",
        "extra_records:",
        "  - { name: static.example.test, type: A, value: 192.0.2.77 }",
      ];
      // One server overrides the clients' DNS, the other offers its resolver as a fallback.
      const [overriding, falling] = await Promise.all([
        startControlServer(h, { name: "override", tls: true, dns: dnsSection(true) }),
        startControlServer(h, { name: "fallback", tls: true, dns: dnsSection(false) }),
      ]);
      const [a, b] = await Promise.all([
        h.addClient("dns-over", { env: overriding.clientEnv }),
        h.addClient("dns-fall", { env: falling.clientEnv }),
      ]);
      await Promise.all([[overriding, a], [falling, b]].map(async ([server, client]) => {
        const s = server as ControlServer;
        await s.createUser("alice");
        await (client as TailscaleClient).up({
          loginServer: s.url,
          authKey: await s.createAuthKey("alice"),
        });
      }));

      // --- What tailscale dns status shows.
      const over = await dnsStatus(a);
      assert.equal(over.magicDnsSuffix, overriding.baseDomain);
      assert.deepEqual(over.resolvers, [global.address], over.output);
      assert.deepEqual(over.fallbackResolvers, [], over.output);
      assert.deepEqual(over.splitRoutes["corp.example"], [corp.address], over.output);
      assert.deepEqual(
        over.searchDomains,
        [overriding.baseDomain, "corp.example", "lab.example"].sort(),
        over.output,
      );
      assert.ok(
        over.extraRecords.some((r) => /static\.example\.test -> 192\.0\.2\.77$/.test(r)),
        over.output,
      );
      const fall = await dnsStatus(b);
      assert.deepEqual(fall.resolvers, [], fall.output);
      assert.deepEqual(fall.fallbackResolvers, [global.address], fall.output);
      assert.deepEqual(fall.splitRoutes["corp.example"], [corp.address], fall.output);

      // --- What the client's resolver does with a query.
      // Split DNS: a name under corp.example goes to the corp resolver, with or without override.
      // (v1.80 without a default resolver cannot forward anything in userspace mode: it would need
      // the OS's DNS config, cannot read it, and answers ServerFailure; v1.102 forwards.)
      const oldClient = (await b.status()).Version.startsWith("1.80.");
      for (const client of oldClient ? [a] : [a, b]) {
        await waitForDnsAnswer(client, "intranet.corp.example.", "A", ["192.0.2.102"]);
      }
      if (oldClient) {
        assert.equal((await dnsQuery(b, "intranet.corp.example.")).rcode, "RCodeServerFailure");
      }
      assert.ok((await corp.queries()).includes("intranet.corp.example."));
      // Anything else goes to the global resolver when it overrides the client's DNS.
      const answered = await waitForDnsAnswer(a, "www.example.org.", "A", ["192.0.2.101"]);
      assert.ok(answered.resolvers.some((r) => r.includes(global.address)), answered.output);
      // The extra record is answered by the client itself: no resolver is asked.
      await waitForDnsAnswer(a, "static.example.test.", "A", ["192.0.2.77"]);
      assert.ok(!(await global.queries()).includes("static.example.test."));
      // As a fallback only, the global resolver is not where the client sends other names (in
      // userspace mode it has no OS resolver either: ServerFailure), as with headscale.
      const unanswered = await dnsQuery(b, "other.example.org.");
      assert.deepEqual(answerBodies(unanswered, "A"), [], unanswered.output);
      assert.ok(!(await global.queries()).includes("other.example.org."));
    }),
});
