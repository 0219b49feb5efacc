/**
 * The real server process (main.ts, embedded DERP on the main listener, verify_clients off) on
 * loopback, attacked by admitted DERP clients: truncated frames, an oversized frame, unknown
 * frame types, and 2,000 idle connections. Two well-behaved clients must keep relaying to each
 * other throughout, and the server must keep running. (The unit tests in tests/derp_*_test.ts
 * check the same against a DerpServer in the test process; this checks the wired server.)
 */
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { DerpClient } from "../lib/derp/client.ts";
import { FrameType } from "../lib/derp/frame.ts";
import { freeTcpPort, freeUdpPort, serverConfigYaml } from "./support/server_config.ts";
import { ManagedProcess } from "./harness/command.ts";
import { waitFor } from "./harness/wait.ts";

const REPO_ROOT = fileURLToPath(new URL("../", import.meta.url));
const DENO_FLAGS = ["--allow-net", "--allow-read", "--allow-write", "--allow-env", "--allow-sys"];
const IDLE_CLIENTS = 2_000;

interface LoopbackServer {
  url: string;
  process: ManagedProcess;
  logPath: string;
  stop(): Promise<void>;
}

async function startLoopbackServer(): Promise<LoopbackServer> {
  const dir = await Deno.makeTempDir({ prefix: "hsd-derp-abuse-" });
  const port = freeTcpPort();
  const url = `http://127.0.0.1:${port}`;
  const configPath = `${dir}/config.yaml`;
  await Deno.writeTextFile(
    configPath,
    serverConfigYaml({
      dir,
      serverUrl: url,
      listenAddr: `127.0.0.1:${port}`,
      derp: { verifyClients: false, stunListenAddr: `127.0.0.1:${await freeUdpPort()}` },
      logLevel: "info",
    }),
  );
  const logPath = `${dir}/server.log`;
  const process = await ManagedProcess.spawn(
    [Deno.execPath(), "run", ...DENO_FLAGS, `${REPO_ROOT}main.ts`, "-c", configPath],
    { cwd: dir, logPath, dieWithParent: false },
  );
  const stop = async () => {
    await process.stop();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  };
  try {
    await waitFor(
      async () => {
        if (!process.running) throw new Error(`server exited: ${JSON.stringify(process.status)}`);
        const res = await fetch(`${url}/health`, { signal: AbortSignal.timeout(2_000) });
        await res.body?.cancel();
        return res.status === 200 ? true : undefined;
      },
      60_000,
      { description: `server health at ${url}/health`, intervalMs: 200 },
    );
  } catch (error) {
    await stop();
    throw error;
  }
  return { url, process, logPath, stop };
}

function frameHeader(type: number, len: number): Uint8Array {
  const b = new Uint8Array(5);
  b[0] = type;
  new DataView(b.buffer).setUint32(1, len);
  return b;
}

/** A connected client that has its ServerInfo (i.e. was admitted). */
async function admitted(url: string): Promise<DerpClient> {
  const c = await DerpClient.connect({ url });
  await c.recvType("serverInfo", 10_000);
  return c;
}

/** `rounds` packets a→b and back, each checked by content. */
async function exchange(a: DerpClient, b: DerpClient, rounds: number, tag: number): Promise<void> {
  for (let i = 0; i < rounds; i++) {
    const body = new Uint8Array(1200).fill((tag + i) & 0xff);
    a.send(b.publicKey, body);
    const got = await b.recvType("packet", 10_000);
    assert.deepEqual(got.source, a.publicKey);
    assert.equal(got.data.length, 1200);
    assert.equal(got.data[1199], (tag + i) & 0xff);
    b.send(a.publicKey, got.data);
    assert.equal((await a.recvType("packet", 10_000)).data[0], (tag + i) & 0xff);
  }
}

Deno.test("derp (real server): malformed frames and 2,000 idle clients harm no one else", async () => {
  const server = await startLoopbackServer();
  const derpUrl = `${server.url}/derp`;
  const clients: DerpClient[] = [];
  try {
    const [a, b] = await Promise.all([admitted(derpUrl), admitted(derpUrl)]);
    clients.push(a, b);
    await exchange(a, b, 50, 0);

    // Oversized: a SendPacket claiming 2 MiB closes that client only.
    const oversized = await admitted(derpUrl);
    clients.push(oversized);
    oversized.writeRaw(frameHeader(FrameType.SendPacket, 2 << 20));
    await oversized.closed;

    // Unknown frame types, large ones split over writes included, are skipped: the client
    // stays usable and its next packet arrives.
    const unknown = await admitted(derpUrl);
    clients.push(unknown);
    unknown.writeRaw(frameHeader(0x7f, 100 << 10));
    for (let i = 0; i < 10; i++) unknown.writeRaw(new Uint8Array(10 << 10).fill(i));
    unknown.writeRaw(frameHeader(0x20, 0));
    await unknown.ping();
    await exchange(unknown, a, 5, 1);

    // Truncated: a SendPacket header promising 1,000 bytes, 10 bytes, then the client leaves.
    // And one that stops mid-frame and stays connected.
    const truncatedGone = await admitted(derpUrl);
    const truncatedStuck = await admitted(derpUrl);
    clients.push(truncatedStuck);
    for (const t of [truncatedGone, truncatedStuck]) {
      t.writeRaw(frameHeader(FrameType.SendPacket, 1_000));
      t.writeRaw(new Uint8Array(10));
    }
    await truncatedGone.close();

    await exchange(a, b, 50, 2);

    // Thousands of idle (admitted) clients, connected 200 at a time.
    for (let batch = 0; batch < IDLE_CLIENTS / 200; batch++) {
      clients.push(
        ...await Promise.all(
          Array.from({ length: 200 }, () => DerpClient.connect({ url: derpUrl })),
        ),
      );
    }
    await exchange(a, b, 200, 3);
    await Promise.all([a.ping(), b.ping()]);
    // Idle clients are still served: a sample answers pings and can be reached.
    const idle = clients.slice(-IDLE_CLIENTS);
    await Promise.all([idle[0], idle[999], idle[IDLE_CLIENTS - 1]].map((c) => c.ping(10_000)));
    await exchange(idle[0], idle[IDLE_CLIENTS - 1], 5, 4);

    assert.ok(server.process.running, "the server is still running");
    const health = await fetch(`${server.url}/health`);
    await health.body?.cancel();
    assert.equal(health.status, 200);
  } catch (error) {
    await Promise.all(clients.map((c) => c.close().catch(() => {})));
    await server.process.stop();
    console.error(`server log tail:\n${(await Deno.readTextFile(server.logPath)).slice(-3000)}`);
    throw error;
  } finally {
    await Promise.all(clients.map((c) => c.close().catch(() => {})));
    await server.process.stop();
  }
  // The log is complete once the process has ended.
  const log = await Deno.readTextFile(server.logPath);
  await server.stop();
  assert.match(log, /exceeds 65536/, "the server logged why it closed the oversized sender");
  assert.doesNotMatch(log, /uncaught|panic|FATAL/i, "nothing escaped the connection handlers");
});
