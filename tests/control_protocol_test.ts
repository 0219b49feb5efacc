/**
 * End to end over a real node:http server: our Noise client dials /ts2021, speaks HTTP/2 inside
 * Noise, registers with a pre-auth key and follows the streaming map — the minimal client the
 * control protocol needs — plus the ways a hostile or broken client can fail.
 */
import assert from "node:assert/strict";
import { createServer, type Server } from "node:http";
import { connect as netConnect } from "node:net";
import { ControlClient } from "./helpers/control_client.ts";
import type { NodeKey } from "../lib/tailcfg/keys.ts";
import { startTestControl, type TestControl } from "./helpers/control.ts";
import { allowAllPolicy } from "../lib/mapper/policy_view.ts";
import { noiseClientConnect, NoiseDialError } from "../lib/noise/client.ts";
import { startClientHandshake } from "../lib/noise/handshake.ts";
import { ts2021UpgradeHandler } from "../lib/noise/upgrade.ts";
import { formatKey, generateKeyPair, type KeyPair } from "../lib/tailcfg/keys.ts";
import type { MapResponse } from "../lib/tailcfg/types.ts";

interface Harness {
  t: TestControl;
  port: number;
  serverKey: KeyPair;
  dial(machine: KeyPair, capVersion?: number): Promise<ControlClient>;
  close(): Promise<void>;
}

async function startHarness(
  opts: Parameters<typeof startTestControl>[0] = {},
): Promise<Harness> {
  const t = await startTestControl(opts);
  const serverKey = generateKeyPair();
  const upgrade = ts2021UpgradeHandler({
    serverPrivateKey: serverKey.privateKey,
    serverPublicKey: serverKey.publicKey,
    onConnection: (conn) =>
      t.control.handleNoiseConnection(
        conn,
        formatKey(conn.peerPublicKey, "mkey"),
        conn.protocolVersion,
      ),
  });
  const http: Server = createServer((_req, res) => res.writeHead(404).end());
  http.on("upgrade", (req, socket, head) => upgrade(req, socket, head));
  await new Promise<void>((resolve) => http.listen(0, "127.0.0.1", resolve));
  const port = (http.address() as { port: number }).port;
  const clients: ControlClient[] = [];
  return {
    t,
    port,
    serverKey,
    async dial(machine, capVersion = 130) {
      const { conn } = await noiseClientConnect({
        host: "127.0.0.1",
        port,
        serverPublicKey: serverKey.publicKey,
        machinePrivateKey: machine.privateKey,
        capVersion,
      });
      const client = ControlClient.over(conn);
      clients.push(client);
      return client;
    },
    async close() {
      for (const c of clients) c.close();
      await t.close();
      http.closeAllConnections();
      await new Promise((resolve) => http.close(resolve));
    },
  };
}

async function withHarness(
  fn: (h: Harness) => Promise<void>,
  opts: Parameters<typeof startTestControl>[0] = {},
) {
  const h = await startHarness(opts);
  try {
    await fn(h);
  } finally {
    await h.close();
  }
}

function nodeKey(): NodeKey {
  return formatKey(generateKeyPair().publicKey, "nodekey");
}

function register(client: ControlClient, nk: string, authKey: string, hostname: string) {
  return client.register({
    Version: 130,
    NodeKey: nk,
    OldNodeKey: "nodekey:" + "0".repeat(64),
    Auth: { AuthKey: authKey },
    Expiry: "0001-01-01T00:00:00Z",
    Hostinfo: { Hostname: hostname, OS: "linux", BackendLogID: "x" },
  });
}

function streamMap(client: ControlClient, nk: string, hostname: string) {
  return client.map({
    Version: 130,
    NodeKey: nk,
    DiscoKey: formatKey(generateKeyPair().publicKey, "discokey"),
    Compress: "zstd",
    KeepAlive: true,
    Stream: true,
    Hostinfo: {
      Hostname: hostname,
      OS: "linux",
      BackendLogID: "x",
      NetInfo: { PreferredDERP: 999 },
    },
    Endpoints: ["192.0.2.10:41641"],
  });
}

Deno.test("protocol: Noise → HTTP/2 → register with a pre-auth key → streaming map", async () => {
  await withHarness(async (h) => {
    const alice = await h.t.user("alice");
    const key = await h.t.authKey({ user: alice, reusable: true });

    const machineA = generateKeyPair();
    const a = await h.dial(machineA);
    const nkA = nodeKey();
    const reg = await register(a, nkA, key, "alpha");
    assert.equal(reg.status, 200);
    assert.equal(JSON.parse(reg.text).MachineAuthorized, true);
    assert.equal(h.t.state.nodeByNodeKey(nkA)!.machineKey, formatKey(machineA.publicKey, "mkey"));

    const machineB = generateKeyPair();
    const b = await h.dial(machineB);
    const nkB = nodeKey();
    assert.equal((await register(b, nkB, key, "beta")).status, 200);
    h.t.notifier.flush();

    const mapA = streamMap(a, nkA, "alpha");
    const full = (await mapA.next())!;
    assert.equal(full.Node!.Name, "alpha.tailnet.internal.");
    assert.deepEqual(full.Peers!.map((p) => p.Name), ["beta.tailnet.internal."]);
    assert.ok(full.DERPMap!.Regions["999"]);

    // The whole multi-MiB-capable path: several records per direction, concurrent streams.
    const mapB = streamMap(b, nkB, "beta");
    const fullB = (await mapB.next())!;
    assert.equal(fullB.Peers![0].Online, true);
    let seen: MapResponse | null = null;
    while (!seen) {
      const m = await mapA.nextUpdate(5_000);
      assert.ok(m, "stream ended early");
      const id = fullB.Node!.ID;
      if (m.PeersChangedPatch?.some((p) => p.NodeID === id && p.Online)) seen = m;
      if (m.PeersChanged?.some((p) => p.ID === id && p.Online)) seen = m;
    }
    mapA.close();
    mapB.close();
  });
});

Deno.test("protocol: a client may not use another machine's node key", async () => {
  await withHarness(async (h) => {
    const alice = await h.t.user("alice");
    const key = await h.t.authKey({ user: alice, reusable: true });
    const owner = await h.dial(generateKeyPair());
    const nk = nodeKey();
    await register(owner, nk, key, "victim");

    const thief = await h.dial(generateKeyPair());
    const map = streamMap(thief, nk, "victim");
    assert.equal(await map.status, 404);
    const reg = await thief.register({ Version: 130, NodeKey: nk });
    assert.equal(reg.status, 401);
    const stolenKeyReg = await register(thief, nk, key, "thief");
    assert.equal(stolenKeyReg.status, 401);
  });
});

Deno.test("protocol: refused keys and too-old clients get a clear reason", async () => {
  await withHarness(async (h) => {
    const alice = await h.t.user("alice");
    const single = await h.t.authKey({ user: alice });
    const first = await h.dial(generateKeyPair());
    assert.equal(
      JSON.parse((await register(first, nodeKey(), single, "one")).text).Error,
      undefined,
    );

    const second = await h.dial(generateKeyPair());
    const used = JSON.parse((await register(second, nodeKey(), single, "two")).text);
    assert.equal(used.Error, "auth key already used");

    const expiring = await h.t.authKey({ user: alice, expiration: new Date(Date.now() + 30) });
    await new Promise((r) => setTimeout(r, 60));
    const expired = JSON.parse((await register(second, nodeKey(), expiring, "three")).text);
    assert.equal(expired.Error, "auth key expired");

    // Capability version below 113: refused during the upgrade...
    await assert.rejects(h.dial(generateKeyPair(), 100), NoiseDialError);
    // ...and in the request body, for a client that lies in the Noise header.
    const liar = await h.dial(generateKeyPair(), 130);
    const old = await liar.register({ Version: 90, NodeKey: nodeKey() });
    assert.equal(old.status, 400);
    assert.match(old.text, /unsupported client version/);
  });
});

/** A raw TCP ts2021 upgrade; resolves with the socket after the handshake response. */
function rawUpgrade(port: number, handshakeHeader: string): Promise<{
  status: string;
  socket: ReturnType<typeof netConnect>;
}> {
  return new Promise((resolve, reject) => {
    const socket = netConnect({ host: "127.0.0.1", port });
    let buf = Buffer.alloc(0);
    socket.on("error", reject);
    socket.on("data", (c) => {
      buf = Buffer.concat([buf, c]);
      const end = buf.indexOf("\r\n\r\n");
      if (end >= 0) {
        socket.removeAllListeners("data");
        resolve({ status: buf.subarray(0, end).toString("latin1").split("\r\n")[0], socket });
      }
    });
    socket.write(
      "POST /ts2021 HTTP/1.1\r\nHost: x\r\nUpgrade: tailscale-control-protocol\r\n" +
        `Connection: upgrade\r\nX-Tailscale-Handshake: ${handshakeHeader}\r\n` +
        "Content-Length: 0\r\n\r\n",
    );
  });
}

function closed(socket: ReturnType<typeof netConnect>): Promise<void> {
  return new Promise((resolve) => {
    if (socket.destroyed) return resolve();
    socket.on("close", () => resolve());
    socket.resume();
  });
}

Deno.test("protocol: bad handshakes and oversized frames end only that connection", async () => {
  await withHarness(async (h) => {
    const garbage = await rawUpgrade(h.port, "!!!not-base64!!!");
    assert.match(garbage.status, / 400 /);
    garbage.socket.destroy();

    const wrongBytes = await rawUpgrade(h.port, Buffer.alloc(101, 7).toString("base64"));
    await closed(wrongBytes.socket);

    // A valid handshake, then a record frame claiming 65535 bytes (the limit is 4096).
    const hs = startClientHandshake({
      machinePrivateKey: generateKeyPair().privateKey,
      serverPublicKey: h.serverKey.publicKey,
      version: 130,
    });
    const ok = await rawUpgrade(h.port, Buffer.from(hs.initiation).toString("base64"));
    assert.match(ok.status, / 101 /);
    ok.socket.write(Uint8Array.of(0x04, 0xff, 0xff, ...new Uint8Array(64)));
    await closed(ok.socket);

    // The server still serves everyone else.
    const alice = await h.t.user("alice");
    const key = await h.t.authKey({ user: alice });
    const client = await h.dial(generateKeyPair());
    const reg = await register(client, nodeKey(), key, "survivor");
    assert.equal(reg.status, 200);
    assert.equal(JSON.parse(reg.text).MachineAuthorized, true);
  });
});

Deno.test("protocol: SSH check — the destination is held, an admin approves, only it may ask", async () => {
  await withHarness(async (h) => {
    const alice = await h.t.user("alice");
    const key = await h.t.authKey({ user: alice, reusable: true });
    const src = await h.dial(generateKeyPair());
    const dst = await h.dial(generateKeyPair());
    assert.equal((await register(src, nodeKey(), key, "laptop")).status, 200);
    assert.equal((await register(dst, nodeKey(), key, "server")).status, 200);
    const byName = new Map(h.t.state.listNodes().map((n) => [n.hostname, n]));
    const srcNode = byName.get("laptop")!, dstNode = byName.get("server")!;
    // Every pair is under a one-minute check rule.
    h.t.setPolicy({
      ...allowAllPolicy(() => h.t.state.listNodes().map((n) => n.id)),
      sshCheckPeriodMs: () => 60_000,
    });
    const path = `/machine/ssh/action/${srcNode.id}/to/${dstNode.id}?local_user=root`;

    const notDst = await src.request("GET", path);
    assert.equal(notDst.status, 401, notDst.text);

    const hold = await dst.request("GET", path);
    assert.equal(hold.status, 200, hold.text);
    const action = JSON.parse(hold.text);
    assert.equal(action.accept, undefined);
    const id = new URL(action.holdAndDelegate.replace(/\$/g, "")).searchParams.get("auth_id")!;
    assert.ok(action.message.includes(`/auth/${id}`), action.message);

    const followUp = dst.request("GET", `${path}&auth_id=${id}`);
    await new Promise((r) => setTimeout(r, 20));
    await h.t.control.authRequests.approve(id);
    const verdict = await followUp;
    assert.equal(verdict.status, 200, verdict.text);
    assert.equal(JSON.parse(verdict.text).accept, true);

    // Approved within the period: the next connection is let in at once.
    const again = await dst.request("GET", path);
    assert.equal(JSON.parse(again.text).accept, true);
    // And the same id cannot be approved twice.
    await assert.rejects(h.t.control.authRequests.approve(id), /no pending/);
  });
});

Deno.test("protocol: HEADSCALE_DEBUG_DUMP_MAPRESPONSE_PATH keeps every map response per node", async () => {
  const dir = await Deno.makeTempDir({ prefix: "hsd-dump-" });
  try {
    await withHarness(async (h) => {
      const alice = await h.t.user("alice");
      const key = await h.t.authKey({ user: alice, reusable: true });
      const a = await h.dial(generateKeyPair());
      const nkA = nodeKey();
      assert.equal((await register(a, nkA, key, "alpha")).status, 200);
      const mapA = streamMap(a, nkA, "alpha");
      assert.ok(await mapA.next());
      const b = await h.dial(generateKeyPair());
      assert.equal((await register(b, nodeKey(), key, "beta")).status, 200);
      let received = 1;
      for (;;) {
        const m = await mapA.nextUpdate(5_000);
        assert.ok(m, "stream ended early");
        received++;
        if (m.PeersChanged?.some((p) => p.Name === "beta.tailnet.internal.")) break;
      }
      mapA.close();

      // Every response alpha received is on disk, in order: the full map, then deltas (one more
      // may have been sent after the one we stopped at).
      const idA = h.t.state.nodeByNodeKey(nkA)!.id;
      const files = [...Deno.readDirSync(`${dir}/${idA}`)].map((e) => e.name).sort();
      assert.ok(files.length >= received, `${received} received, on disk: ${files.join(" ")}`);
      assert.match(files[0], /-full\.json$/);
      assert.ok(files.slice(1).every((f) => f.endsWith("-delta.json")), files.join(" "));
      const read = (f: string) => JSON.parse(Deno.readTextFileSync(`${dir}/${idA}/${f}`));
      assert.equal(read(files[0]).Node.Name, "alpha.tailnet.internal.");
      assert.deepEqual(
        read(files[received - 1]).PeersChanged.map((p: { Name: string }) => p.Name),
        ["beta.tailnet.internal."],
      );
    }, { debugDumpMapResponsePath: dir });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
