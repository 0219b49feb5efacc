/**
 * The main listener under slow, oversized and malformed requests (issue 8): a body that never
 * arrives gets 408 within tuning.http_request_timeout, oversized headers 431, garbage 400, each
 * with `Connection: close`; connections past tuning.max_connections are dropped; an upgraded
 * /ts2021 connection outlives the deadline.
 */
import assert from "node:assert/strict";
import { createServer } from "node:http";
import type { Duplex } from "node:stream";
import { ConfigError, loadConfig, parseConfigText } from "../lib/config/load.ts";
import { silentLogger } from "../lib/log/log.ts";
import { type RunningServer, startServer } from "../lib/server/server.ts";
import { noiseClientConnect } from "../lib/noise/client.ts";
import { ControlClient } from "./helpers/control_client.ts";
import { generateKeyPair, parseKey } from "../lib/tailcfg/keys.ts";
import { applyHttpLimits, httpServerOptions } from "../lib/http/limits.ts";
import { startMetricsListener } from "../lib/server/metrics.ts";
import { MetricsRegistry } from "../lib/metrics/registry.ts";
import { freePort, writeConfig } from "./helpers/server_process.ts";

async function withServer(
  extra: string,
  fn: (port: number, server: RunningServer) => Promise<void>,
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "hsd-limits-" });
  try {
    const port = freePort();
    const { config } = loadConfig({ path: writeConfig(dir, port, extra) });
    const server = await startServer(config, silentLogger());
    try {
      await fn(port, server);
    } finally {
      await server.close();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/**
 * Sends `request` on a fresh connection and reads until the server closes it; `ms` counts from
 * before the dial, so it is never less than what the server counted for the connection.
 */
async function exchange(port: number, request: string): Promise<{ text: string; ms: number }> {
  const started = Date.now();
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const writing = conn.write(new TextEncoder().encode(request)).catch(() => 0);
  const buf = new Uint8Array(65536);
  let text = "";
  try {
    for (;;) {
      const n = await conn.read(buf);
      if (n === null) break;
      text += new TextDecoder().decode(buf.subarray(0, n));
    }
  } finally {
    await writing;
    conn.close();
  }
  return { text, ms: Date.now() - started };
}

/**
 * Sends `request` once the server has noticed a connection the client closed: until it has, its
 * slot is still taken and a new connection is dropped unanswered like any past the cap. Waits
 * for that as long as a slow machine needs; a slot never freed answers "" at the deadline.
 */
async function exchangeOnceFreed(port: number, request: string): Promise<string> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const { text } = await exchange(port, request);
    if (text !== "" || Date.now() > deadline) return text;
    await new Promise((r) => setTimeout(r, 50));
  }
}

function statusLine(text: string): string {
  return text.split("\r\n")[0];
}

const FAST = "tuning:\n  http_request_timeout: 1s\n";

Deno.test("http limits: tuning.http_request_timeout and tuning.max_connections", () => {
  const defaults = parseConfigText("").config.tuning;
  assert.equal(defaults.httpRequestTimeoutMs, 30_000);
  assert.ok(defaults.maxConnections > 2 * 10_000, "two connections for each of 10,000 nodes");
  const set = parseConfigText("tuning:\n  http_request_timeout: 10s\n", {
    env: { HEADSCALE_TUNING_MAX_CONNECTIONS: "100" },
  }).config.tuning;
  assert.equal(set.httpRequestTimeoutMs, 10_000);
  assert.equal(set.maxConnections, 100);
  assert.throws(
    () => parseConfigText("tuning:\n  http_request_timeout: 10ms\n  max_connections: 0\n"),
    (e: Error) =>
      e instanceof ConfigError &&
      e.message.includes("tuning.http_request_timeout: must be at least 1s") &&
      e.message.includes("tuning.max_connections: must be at least 1"),
  );
});

Deno.test("http limits: an idle keep-alive connection outlives node's 5 s default and serves the next request", async () => {
  await withServer("tuning:\n  http_request_timeout: 20s\n", async (port) => {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    const buf = new Uint8Array(65536);
    const ask = async () => {
      await conn.write(new TextEncoder().encode("GET /health HTTP/1.1\r\nHost: x\r\n\r\n"));
      let text = "";
      while (!/\r\n\r\n[\s\S]*\}/.test(text)) {
        const n = await conn.read(buf);
        if (n === null) return `${text}<closed>`;
        text += new TextDecoder().decode(buf.subarray(0, n));
      }
      return text;
    };
    try {
      assert.equal(statusLine(await ask()), "HTTP/1.1 200 OK");
      await new Promise((r) => setTimeout(r, 6_000));
      const again = await ask();
      assert.equal(statusLine(again), "HTTP/1.1 200 OK", again);
    } finally {
      conn.close();
    }
  });
});

Deno.test("http limits: a request that never finishes gets 408 and Connection: close", async () => {
  await withServer(FAST, async (port, server) => {
    const { key } = await server.state.createApiKey(null);
    // Headers that never end, and a body shorter than its Content-Length.
    for (
      const request of [
        "GET /health HTTP/1.1\r\nHost: x\r\n",
        `POST /api/v1/user HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${key}\r\n` +
        "Content-Length: 100\r\n\r\n{}",
      ]
    ) {
      const { text, ms } = await exchange(port, request);
      assert.equal(statusLine(text), "HTTP/1.1 408 Request Timeout", request);
      assert.match(text, /\r\nconnection: close\r\n/i);
      // Not before the deadline; after it, by the server's check interval (1 s) and whatever
      // a slow machine adds, but long before the 30 s default.
      assert.ok(ms >= 900 && ms < 15_000, `answered after ${ms} ms`);
    }
  });
});

Deno.test("http limits: oversized headers get 431, garbage 400, both Connection: close", async () => {
  await withServer("", async (port) => {
    for (const size of [20_000, 1 << 20]) {
      const { text } = await exchange(
        port,
        `GET /health HTTP/1.1\r\nHost: x\r\nX-Big: ${"a".repeat(size)}\r\n\r\n`,
      );
      assert.equal(statusLine(text), "HTTP/1.1 431 Request Header Fields Too Large", `${size}`);
      assert.match(text, /\r\nconnection: close\r\n/i);
    }
    const { text } = await exchange(port, "NOT HTTP AT ALL\r\n\r\n");
    assert.equal(statusLine(text), "HTTP/1.1 400 Bad Request");
    assert.match(text, /\r\nconnection: close\r\n/i);
    // The listener still serves well-formed requests.
    const ok = await exchange(port, "GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert.equal(statusLine(ok.text), "HTTP/1.1 200 OK");
  });
});

Deno.test("http limits: connections past tuning.max_connections are dropped", async () => {
  await withServer("tuning:\n  max_connections: 3\n", async (port) => {
    const held = [];
    for (let i = 0; i < 3; i++) held.push(await Deno.connect({ hostname: "127.0.0.1", port }));
    try {
      await new Promise((r) => setTimeout(r, 200));
      const refused = await exchange(port, "GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
      assert.equal(refused.text, "", "the fourth connection is closed unanswered");
      held.pop()!.close();
      const ok = await exchangeOnceFreed(
        port,
        "GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
      );
      assert.equal(statusLine(ok), "HTTP/1.1 200 OK", "a freed slot is usable again");
    } finally {
      for (const c of held) c.close();
    }
  });
});

Deno.test({
  name: "http limits: an upgraded /ts2021 connection is not cut by the request deadline",
  // The HTTP/2 client session keeps timers past close.
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await withServer(FAST, async (port) => {
      const key = await (await fetch(`http://127.0.0.1:${port}/key?v=130`)).json();
      const { conn } = await noiseClientConnect({
        host: "127.0.0.1",
        port,
        serverPublicKey: parseKey(key.publicKey, "mkey"),
        machinePrivateKey: generateKeyPair().privateKey,
        capVersion: 130,
      });
      const client = ControlClient.over(conn);
      try {
        await new Promise((r) => setTimeout(r, 2_500));
        const reply = await client.post("/machine/update-health", {});
        assert.equal(reply.status, 200, "the Noise connection still answers after 2.5 s");
      } finally {
        client.close();
      }
    });
  },
});

Deno.test("http limits: a response the client does not read is dropped after the timeout", async () => {
  const limits = { requestTimeoutMs: 1_000, maxConnections: 10 };
  const server = createServer(httpServerOptions(limits));
  applyHttpLimits(server, limits);
  let closed = Promise.withResolvers<number>();
  const started = Date.now();
  server.on("request", (_req, res) => {
    res.on("close", () => closed.resolve(Date.now() - started));
    res.writeHead(200);
    const chunk = new Uint8Array(1 << 20);
    const pump = () => {
      while (!res.destroyed && res.write(chunk));
    };
    res.on("drain", pump);
    pump();
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const port = (server.address() as { port: number }).port;
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    await conn.write(new TextEncoder().encode("GET /big HTTP/1.1\r\nHost: x\r\n\r\n"));
    const ms = await closed.promise;
    assert.ok(ms < 5_000, `the stuck response was dropped after ${ms} ms`);
  } finally {
    conn.close();
    closed = Promise.withResolvers();
    await new Promise((r) => server.close(r));
  }
});

Deno.test("http limits: an upgrade after a plain request on the same connection is not timed", async () => {
  const limits = { requestTimeoutMs: 1_000, maxConnections: 10 };
  const server = createServer(httpServerOptions(limits));
  applyHttpLimits(server, limits);
  server.on("request", (_req, res) => res.end("ok"));
  const upgraded: Duplex[] = [];
  server.on("upgrade", (_req, socket) => {
    upgraded.push(socket);
    socket.write(
      "HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n",
    );
    socket.on("data", (d) => socket.write(d));
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const port = (server.address() as { port: number }).port;
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const buf = new Uint8Array(4096);
  const send = async (text: string) => {
    await conn.write(new TextEncoder().encode(text));
    const n = await conn.read(buf);
    return n === null ? "" : new TextDecoder().decode(buf.subarray(0, n));
  };
  try {
    assert.match(await send("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), /^HTTP\/1\.1 200 /);
    const upgrade = "GET /u HTTP/1.1\r\nHost: x\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n";
    assert.match(await send(upgrade), /^HTTP\/1\.1 101 /);
    await new Promise((r) => setTimeout(r, 2_500));
    assert.equal(await send("ping"), "ping", "the upgraded connection outlived the deadline");
  } finally {
    conn.close();
    for (const socket of upgraded) socket.destroy();
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  }
});

Deno.test("http limits: the metrics listener drops connections past its cap", async () => {
  const metrics = await startMetricsListener(
    "127.0.0.1:0",
    new MetricsRegistry(),
    { requestTimeoutMs: 1_000, maxConnections: 1 },
  );
  const port = Number(metrics!.address.split(":").pop());
  const held = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    await new Promise((r) => setTimeout(r, 200));
    const refused = await exchange(port, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
    assert.equal(refused.text, "", "the second connection is closed unanswered");
    held.close();
    const ok = await exchangeOnceFreed(
      port,
      "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert.equal(statusLine(ok), "HTTP/1.1 200 OK", "a freed slot is usable again");
  } finally {
    try {
      held.close();
    } catch { /* closed above */ }
    await metrics!.close();
  }
});
