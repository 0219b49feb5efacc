/**
 * Capabilities with real clients: Taildrop (same user; refused across users, which grants cannot
 * change: the file-sharing capabilities are not user-grantable, as in headscale and the hosted
 * service), grants' app capabilities as the receiving client reports them (`tailscale whois`), forced tags (`nodes tag`) reaching the client and the policy, Tailscale
 * SSH switched on before the policy has any ssh rule, the tailnet's auto-update default, and
 * log uploads following logtail.enabled.
 */
import assert from "node:assert/strict";
import { integrationSkipReason, type TailscaleClient, waitFor, withHarness } from "./harness.ts";
import { startControlServer } from "./support/control_server.ts";
import { startLogCatcher } from "./support/log_catcher.ts";
import { serveHttp } from "./support/node_services.ts";
import { assertNoHttp, waitForHttp, waitForNoHttp } from "./support/reach.ts";
import { ipv4Of, waitForStatus } from "./support/tailnet.ts";

const skipReason = await integrationSkipReason();
if (skipReason) console.log(`capability tests skipped: ${skipReason}`);
const ignore = skipReason !== undefined;

const CHANGE_TIMEOUT_MS = 20_000;
const DRIVE = "tailscale.com/cap/drive";
const RELAY = "tailscale.com/cap/relay";
const CUSTOM = "example.com/cap/custom";

const ALLOW_ALL = `{ "action": "accept", "src": ["*"], "dst": ["*:*"] }`;

/**
 * alice's nodes may read bob's "docs" share and have a custom capability at bob's; bob's nodes
 * may use alice's as peer relays. Taildrive and relay come with their companions, reversed
 * (drive-sharer, relay-target), as headscale and the hosted service generate them.
 */
const GRANTS = `[
    {
      "src": ["alice@"],
      "dst": ["bob@"],
      "app": { "${DRIVE}": [{ "shares": ["docs"], "access": "ro" }], "${CUSTOM}": [{ "level": 3 }] },
    },
    { "src": ["bob@"], "dst": ["alice@"], "app": { "${RELAY}": [{}] } },
  ]`;

/** `tailscale whois --json <ip>` CapMap on `client`: what the peer at `ip` may do here. */
async function peerCaps(client: TailscaleClient, ip: string): Promise<Record<string, unknown[]>> {
  const out = await client.cliChecked(["whois", "--json", ip], { timeoutMs: 15_000 });
  return (JSON.parse(out).CapMap ?? {}) as Record<string, unknown[]>;
}

/** Sends `name` with `content` from `from` to `to` (`tailscale file cp … <ip>:`). */
function sendFile(from: TailscaleClient, toIp: string, name: string, content: string) {
  return from.cli(["file", "cp", `--name=${name}`, "-", `${toIp}:`], {
    stdin: content,
    timeoutMs: 30_000,
  });
}

/** Waits until `to`'s Taildrop inbox yields `name` (`tailscale file get`); returns its content. */
async function receiveFile(to: TailscaleClient, dir: string, name: string): Promise<string> {
  await Deno.mkdir(dir, { recursive: true });
  return await waitFor(
    async () => {
      await to.cliChecked(["file", "get", "--conflict=overwrite", dir], { timeoutMs: 15_000 });
      return await Deno.readTextFile(`${dir}/${name}`).catch(() => undefined);
    },
    CHANGE_TIMEOUT_MS,
    { description: `${to.name}: ${name} in its Taildrop inbox`, intervalMs: 300 },
  );
}

Deno.test({
  name:
    "capabilities: Taildrop within a user and refused across users; grants' app capabilities in the receiving client's whois",
  ignore,
  fn: () =>
    withHarness({ name: "caps-taildrop" }, async (h) => {
      const server = await startControlServer(h, {
        extraConfig: "policy:\n  mode: database",
        tls: true,
      });
      for (const user of ["alice", "bob"]) await server.createUser(user);
      await server.setPolicy(`{ "acls": [${ALLOW_ALL}] }`);
      const [a1, a2, b1] = await h.addClients(["alice-1", "alice-2", "bob-1"], {
        env: server.clientEnv,
      });
      const aliceKey = await server.createAuthKey("alice", { reusable: true });
      const bobKey = await server.createAuthKey("bob");
      await Promise.all([
        a1.up({ loginServer: server.url, authKey: aliceKey }),
        a2.up({ loginServer: server.url, authKey: aliceKey }),
        b1.up({ loginServer: server.url, authKey: bobKey }),
      ]);
      await Promise.all([a1, a2, b1].map((c) => c.waitForPeers(2, 30_000, { online: true })));
      const [a1Ip, a2Ip, b1Ip] = await Promise.all([a1, a2, b1].map(ipv4Of));

      // --- Same user: the file arrives.
      const sent = await sendFile(a1, a2Ip, "note.txt", "hello alice-2\n");
      assert.ok(sent.success, `file cp to alice-2: ${sent.stderr}${sent.stdout}`);
      assert.equal(await receiveFile(a2, `${h.workDir}/inbox-a2`, "note.txt"), "hello alice-2\n");

      // --- Another user: refused by the sender's client, nothing arrives.
      const refused = await sendFile(a1, b1Ip, "secret.txt", "not for bob\n");
      assert.equal(refused.success, false, "alice-1 sent a file to bob's node");
      assert.match(
        refused.stderr + refused.stdout,
        /owned by (a )?different user/,
        JSON.stringify(refused),
      );
      assert.deepEqual(await peerCaps(b1, a1Ip), {}, "no grant yet: alice has no caps at bob's");

      // --- Grants' app capabilities: each shows at the receiving client, for the intended
      // sources only, with its values.
      await server.setPolicy(`{ "acls": [${ALLOW_ALL}], "grants": ${GRANTS} }`);
      const atBob = await waitFor(
        async () => {
          const caps = await peerCaps(b1, a1Ip);
          return DRIVE in caps ? caps : undefined;
        },
        CHANGE_TIMEOUT_MS,
        { description: "bob-1: alice-1 with the Taildrive capability (whois)" },
      );
      assert.deepEqual(Object.keys(atBob).sort(), [CUSTOM, DRIVE, `${RELAY}-target`]);
      assert.deepEqual(atBob[DRIVE], [{ shares: ["docs"], access: "ro" }]);
      assert.deepEqual(atBob[CUSTOM], [{ level: 3 }]);
      assert.deepEqual(Object.keys(await peerCaps(b1, a2Ip)).sort(), Object.keys(atBob).sort());
      const atAlice = await waitFor(
        async () => {
          const caps = await peerCaps(a1, b1Ip);
          return RELAY in caps ? caps : undefined;
        },
        CHANGE_TIMEOUT_MS,
        { description: "alice-1: bob-1 with the relay capability (whois)" },
      );
      assert.deepEqual(Object.keys(atAlice).sort(), [`${DRIVE}-sharer`, RELAY]);
      assert.deepEqual(await peerCaps(a1, a2Ip), {}, "nothing granted between alice's nodes");

      // Taildrop across users stays refused: grants cannot name the file-sharing capabilities.
      const still = await sendFile(a1, b1Ip, "secret.txt", "still not for bob\n");
      assert.equal(still.success, false, "alice-1 sent a file to bob's node after the grants");
    }),
});

Deno.test({
  name:
    "capabilities: nodes tag reaches the client's Self.Tags and what the policy lets it reach; tailscale set --ssh works before any ssh rule; the auto-update default",
  ignore,
  fn: () =>
    withHarness({ name: "caps-tags-ssh" }, async (h) => {
      const server = await startControlServer(h, {
        extraConfig: "policy:\n  mode: database\nauto_update:\n  enabled: true",
        tls: true,
      });
      for (const user of ["alice", "bob"]) await server.createUser(user);
      // alice may open port 80 on tag:web, bob's nodes port 80 on alice's; no ssh section.
      await server.setPolicy(`{
        "tagOwners": { "tag:web": ["alice@"] },
        "acls": [
          { "action": "accept", "src": ["alice@"], "dst": ["tag:web:80"] },
          { "action": "accept", "src": ["bob@"], "dst": ["alice@:80"] },
        ],
      }`);
      const [laptop, srv] = await h.addClients(["laptop", "srv"], { env: server.clientEnv });
      await Promise.all([
        laptop.up({ loginServer: server.url, authKey: await server.createAuthKey("alice") }),
        srv.up({ loginServer: server.url, authKey: await server.createAuthKey("bob") }),
      ]);
      const [laptopIp, srvIp] = await Promise.all([ipv4Of(laptop), ipv4Of(srv)]);
      const web = await serveHttp(h, srv, [80]);
      const home = await serveHttp(h, laptop, [80]);
      try {
        // --- Tailscale SSH can be switched on with no ssh rule in the policy (as with headscale,
        // every node gets the SSH capability; the policy decides who gets in).
        const ssh = await srv.cli(["set", "--ssh"]);
        assert.ok(ssh.success, `tailscale set --ssh: ${ssh.stderr}${ssh.stdout}`);
        assert.equal((await srv.cliChecked(["debug", "prefs"])).includes('"RunSSH": true'), true);

        // --- The tailnet's auto-update default is in the node's own capabilities.
        const netmap = JSON.parse(await srv.cliChecked(["debug", "netmap"]));
        assert.deepEqual(netmap.SelfNode?.CapMap?.["default-auto-update"], [true]);

        // --- bob's node: no tags; it may open alice's laptop, alice may not open it.
        assert.deepEqual((await srv.status()).Self?.Tags ?? [], []);
        await waitForHttp(srv, laptopIp, 80, "laptop:80");
        await assertNoHttp(laptop, srvIp, 80, srv);

        // --- Forced tag: the client sees it as its own, and the policy now treats the node as
        // tag:web, no longer as bob's: alice may open it, it may not open alice's laptop.
        const node = await server.nodeByHostname(srv.name);
        const tagged = await server.cli<{ tags: string[]; user?: { name: string } }>([
          "nodes",
          "tag",
          "--identifier",
          node.id,
          "--tags",
          "tag:web",
        ]);
        assert.deepEqual(tagged.tags, ["tag:web"]);
        await waitForStatus(
          srv,
          (s) => JSON.stringify(s.Self?.Tags ?? []) === JSON.stringify(["tag:web"]),
          "Self.Tags [tag:web]",
          CHANGE_TIMEOUT_MS,
        );
        await waitForHttp(laptop, srvIp, 80, "srv:80", CHANGE_TIMEOUT_MS);
        await waitForNoHttp(srv, laptopIp, 80, CHANGE_TIMEOUT_MS);
        await assertNoHttp(srv, laptopIp, 80, laptop);
      } finally {
        await Promise.all([web.stop(), home.stop()]);
      }
    }),
});

Deno.test({
  name:
    "capabilities: logtail.enabled — a client of a server without it stops uploading logs once it has its netmap; with it, it keeps uploading",
  ignore,
  fn: () =>
    withHarness({ name: "caps-logtail" }, async (h) => {
      // Two servers, one each way (headscale's default is off: Debug.DisableLogTail).
      const [off, on] = await Promise.all([
        startControlServer(h, { name: "logtail-off", tls: true }),
        startControlServer(h, {
          name: "logtail-on",
          tls: true,
          extraConfig: "logtail:\n  enabled: true",
        }),
      ]);
      const [offLogs, onLogs] = [startLogCatcher(h), startLogCatcher(h)];
      const [quiet, chatty] = await Promise.all([
        h.addClient("logs-off", { env: off.clientEnv, logTarget: offLogs.url }),
        h.addClient("logs-on", { env: on.clientEnv, logTarget: onLogs.url }),
      ]);
      await Promise.all([[off, quiet], [on, chatty]].map(async ([s, c]) => {
        const server = s as typeof off;
        await server.createUser("alice");
        await (c as TailscaleClient).up({
          loginServer: server.url,
          authKey: await server.createAuthKey("alice"),
        });
      }));
      // Both uploaded their start-up logs before they had a netmap.
      assert.ok(offLogs.uploads.length > 0 && onLogs.uploads.length > 0, "no uploads at all");

      // A pref change logs a line naming the new hostname on each client.
      const marker = (name: string) => `${name}-marked`;
      await quiet.cliChecked(["set", `--hostname=${marker(quiet.name)}`]);
      await chatty.cliChecked(["set", `--hostname=${marker(chatty.name)}`]);
      await waitFor(
        () => onLogs.uploads.some((u) => u.includes(marker(chatty.name))),
        CHANGE_TIMEOUT_MS,
        { description: "logs-on's upload of the line after its netmap" },
      );
      // The other client's line was written at the same moment, and is never uploaded.
      await assert.rejects(
        waitFor(() => offLogs.uploads.some((u) => u.includes(marker(quiet.name))), 2_000),
        "logs-off uploaded a line after its netmap said DisableLogTail",
      );
    }),
});
