/**
 * Proves the harness itself, with no server of ours: namespaces reach each other over the bridge,
 * tailscaled starts in a namespace and waits for a login, failures keep artifacts, and nothing is
 * left behind afterwards (also after a simulated crash).
 */
import assert from "node:assert/strict";
import {
  integrationSkipReason,
  listHarnessInterfaces,
  runCommand,
  StopWaiting,
  sweepStaleRuns,
  withHarness,
} from "./harness.ts";

const skipReason = await integrationSkipReason();
if (skipReason) console.log(`integration smoke tests skipped: ${skipReason}`);
const ignore = skipReason !== undefined;

/** Everything in `names` that belongs to run index `index` (bridge, veths, namespaces). */
function ofRun(names: string[], index: number): string[] {
  return names.filter((n) =>
    n === `hsdbr${index}` || n.startsWith(`hsdv${index}c`) || n.startsWith(`netns hsd${index}-`) ||
    n.startsWith(`/etc/netns/hsd${index}-`)
  );
}

async function pathExists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch {
    return false;
  }
}

Deno.test({
  name: "harness: namespaces ping each other and the bridge; cleanup removes everything",
  ignore,
  async fn() {
    let index = 0;
    let artifactsDir = "";
    await withHarness({ name: "smoke-net" }, async (h) => {
      index = h.network.index;
      artifactsDir = h.artifactsDir;
      const [a, b] = await Promise.all([h.addNamespace(), h.addNamespace()]);
      assert.notEqual(a.address, b.address);
      assert.match(a.address, new RegExp(`^172\\.31\\.${index}\\.\\d+$`));

      for (const [from, to] of [[a, b.address], [b, a.address], [a, h.bridgeAddress]] as const) {
        const ping = await h.execIn(from, ["ping", "-c", "1", "-W", "2", to]);
        assert.ok(
          ping.success,
          `ping ${to} from ${from.name} failed:\n${ping.stdout}${ping.stderr}`,
        );
      }

      // Inside, DNS goes nowhere beyond the namespace.
      const resolv = await h.execIn(a, ["cat", "/etc/resolv.conf"]);
      assert.match(resolv.stdout, /^nameserver 127\.0\.0\.1$/m);

      // Present while the run lives: bridge, both veths, both namespaces (and their /etc/netns
      // files), the no-forwarding rule.
      const present = ofRun(await listHarnessInterfaces(), index);
      assert.deepEqual(present.sort(), [
        `/etc/netns/hsd${index}-c0`,
        `/etc/netns/hsd${index}-c1`,
        `hsdbr${index}`,
        `hsdv${index}c0`,
        `hsdv${index}c1`,
        `netns hsd${index}-c0`,
        `netns hsd${index}-c1`,
      ]);
      const rules = JSON.parse((await runCommand(["ip", "-j", "rule", "show"])).stdout) as {
        iif?: string;
        action?: string;
      }[];
      assert.ok(rules.some((r) => r.iif === `hsdbr${index}` && r.action === "unreachable"));
    });
    assert.deepEqual(ofRun(await listHarnessInterfaces(), index), []);
    const rules = (await runCommand(["ip", "rule", "show"])).stdout;
    assert.ok(!rules.includes(`hsdbr${index} `), `rule for hsdbr${index} left behind:\n${rules}`);
    assert.equal(await pathExists(artifactsDir), false, "artifacts of a passing run are removed");
  },
});

Deno.test({
  name: "harness: tailscaled in a namespace starts and reports NeedsLogin",
  ignore,
  async fn() {
    let stateDir = "";
    await withHarness({ name: "smoke-tailscaled" }, async (h) => {
      const client = await h.addClient("solo");
      stateDir = client.stateDir;
      const status = await client.waitForBackendState("NeedsLogin", 30_000);
      assert.equal(status.BackendState, "NeedsLogin");
      assert.deepEqual(status.TailscaleIPs ?? [], []);
      assert.match(status.Version, new RegExp(`^${client.binaries.version.slice(1)}`));
      const log = await Deno.readTextFile(client.logPath);
      assert.match(log, /tailscaled/, "tailscaled output goes to its log file");
      // The daemon runs in the client's namespace, not in the root one.
      const pids = await runCommand(["ip", "netns", "pids", client.namespace.name]);
      assert.ok(pids.stdout.trim().length > 0, "a process runs inside the namespace");
    });
    assert.equal(await pathExists(stateDir), false, "state directories are removed");
  },
});

Deno.test({
  name: "harness: a failing test keeps logs, status and the error under .artifacts/",
  ignore,
  async fn() {
    let artifactsDir = "";
    let index = 0;
    await assert.rejects(
      withHarness({ name: "smoke-failure" }, async (h) => {
        artifactsDir = h.artifactsDir;
        index = h.network.index;
        await h.addClient("keeper");
        throw new Error("deliberate failure");
      }),
      /deliberate failure/,
    );
    try {
      assert.match(artifactsDir, /\/\.artifacts\/smoke-failure-\d{8}T\d{6}-n\d+$/);
      const error = await Deno.readTextFile(`${artifactsDir}/error.txt`);
      assert.match(error, /deliberate failure/);
      const status = JSON.parse(await Deno.readTextFile(`${artifactsDir}/keeper.status.json`));
      assert.equal(status.BackendState, "NeedsLogin");
      assert.ok((await Deno.stat(`${artifactsDir}/keeper.tailscaled.log`)).size > 0);
      assert.match(await Deno.readTextFile(`${artifactsDir}/network.txt`), /client keeper: netns/);
      assert.deepEqual(ofRun(await listHarnessInterfaces(), index), [], "network still cleaned up");
    } finally {
      if (artifactsDir) await Deno.remove(artifactsDir, { recursive: true });
    }
  },
});

Deno.test({
  name: "harness: leftovers of a crashed run are swept",
  ignore,
  async fn() {
    // Build what a crashed run leaves: a labelled bridge whose owner is gone, a namespace (and its
    // /etc/netns files), a veth.
    let index = 0;
    for (let n = 254; n > 0 && index === 0; n--) {
      if ((await runCommand(["ip", "link", "add", `hsdbr${n}`, "type", "bridge"])).success) {
        index = n;
      }
    }
    assert.ok(index > 0, "found a free bridge index");
    const ip = async (...args: string[]) => {
      const r = await runCommand(["ip", ...args]);
      assert.ok(r.success, `ip ${args.join(" ")}: ${r.stderr}`);
    };
    // pid 0 never names a live owner.
    await ip("link", "set", `hsdbr${index}`, "alias", "headscale-deno-it owner=0/1");
    await ip("netns", "add", `hsd${index}-c0`);
    await ip(
      "link",
      "add",
      `hsdv${index}c0`,
      "type",
      "veth",
      "peer",
      "name",
      "eth0",
      "netns",
      `hsd${index}-c0`,
    );
    await ip("rule", "add", "priority", "1000", "iif", `hsdbr${index}`, "unreachable");
    await Deno.mkdir(`/etc/netns/hsd${index}-c0`, { recursive: true });
    await Deno.writeTextFile(`/etc/netns/hsd${index}-c0/resolv.conf`, "nameserver 127.0.0.1\n");

    // A concurrent run's sweep may get there first, so check what is left, not who removed it.
    await sweepStaleRuns();
    assert.deepEqual(ofRun(await listHarnessInterfaces(), index), []);
    const rules = (await runCommand(["ip", "rule", "show"])).stdout;
    assert.ok(!rules.includes(`hsdbr${index} `), `rule left behind:\n${rules}`);
  },
});

Deno.test({
  name: "harness: startServer waits for /health on the bridge; namespaces reach it",
  ignore,
  async fn() {
    await withHarness({ name: "smoke-server" }, async (h) => {
      const listen = h.listenAddress();
      assert.equal(listen.host, h.bridgeAddress);
      // A stand-in server: answers /health, logs one line per request.
      const source = `
        Deno.serve({ hostname: Deno.env.get("HOST"), port: Number(Deno.env.get("PORT")) }, (req) => {
          console.log("request", new URL(req.url).pathname);
          return new URL(req.url).pathname === "/health" ? new Response("ok") : new Response("no", { status: 404 });
        });`;
      const server = await h.startServer({
        command: [Deno.execPath(), "eval", source],
        env: { HOST: listen.host, PORT: String(listen.port) },
        url: listen.url,
      });
      assert.ok(server.running);
      const ns = await h.addNamespace();
      const curl = await h.execIn(ns, ["curl", "-sS", "--max-time", "5", `${listen.url}/health`]);
      assert.equal(curl.stdout, "ok", curl.stderr);
      await server.stop();
      assert.match(await Deno.readTextFile(server.logPath), /request \/health/);
    });
  },
});

Deno.test({
  name: "harness: startServer fails fast with the log when the server exits",
  ignore,
  async fn() {
    await withHarness({ name: "smoke-server-exit" }, async (h) => {
      const listen = h.listenAddress();
      await assert.rejects(
        h.startServer({
          command: ["sh", "-c", "echo 'config error: no such file' >&2; exit 3"],
          url: listen.url,
          readyTimeoutMs: 60_000,
        }),
        (error: Error) => {
          // StopWaiting, not a WaitTimeoutError: it gave up as soon as the process died.
          assert.ok(error instanceof StopWaiting, String(error));
          assert.match(error.message, /server exited/);
          assert.match(error.message, /config error: no such file/);
          return true;
        },
      );
    });
  },
});
