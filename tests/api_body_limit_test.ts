/**
 * Oversized requests to the management API (issue 8): REST answers 413 with the REST error shape
 * and a message naming the limit, whether the size is declared or a chunked body grows past it;
 * Connect and gRPC answer ResourceExhausted naming the limit; oversized headers on the API's own
 * listener get 431.
 */
import assert from "node:assert/strict";
import { Code, ConnectError, createClient, type Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { HeadscaleService } from "../gen/headscale/v1/headscale_pb.ts";
import { loadConfig } from "../lib/config/load.ts";
import { silentLogger } from "../lib/log/log.ts";
import { startServer } from "../lib/server/server.ts";
import { freePort, writeConfig } from "./helpers/server_process.ts";

const LIMIT = "the limit is 1048576 bytes (1 MiB)";

/** A SetPolicy JSON body of exactly `size` bytes. */
function policyBody(size: number): string {
  return `{"policy":"${"a".repeat(size - 13)}"}`;
}

async function withApi(
  fn: (api: { base: string; grpcPort: number; key: string }) => Promise<void>,
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "hsd-body-" });
  try {
    const port = freePort();
    const grpcPort = freePort();
    const extra = `policy:\n  mode: database\ngrpc_listen_addr: 127.0.0.1:${grpcPort}\n` +
      "grpc_allow_insecure: true\n";
    const { config } = loadConfig({ path: writeConfig(dir, port, extra) });
    const server = await startServer(config, silentLogger());
    try {
      const { key } = await server.state.createApiKey(null);
      await fn({ base: `http://127.0.0.1:${port}`, grpcPort, key });
    } finally {
      await server.close();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** Writes `head`, then `chunks` (ignoring a peer that stopped reading), and reads to the end. */
async function rawExchange(port: number, head: string, chunks: Uint8Array[]): Promise<string> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const writing = (async () => {
    await conn.write(new TextEncoder().encode(head));
    for (const c of chunks) await conn.write(c);
  })().catch(() => {});
  let text = "";
  const buf = new Uint8Array(65536);
  try {
    for (;;) {
      const n = await conn.read(buf);
      if (n === null) break;
      text += new TextDecoder().decode(buf.subarray(0, n));
    }
  } catch {
    // A reset after the answer (the rest of the body was never read) changes nothing.
  } finally {
    await writing;
    conn.close();
  }
  return text;
}

Deno.test("api limits: REST answers 413 naming the limit when Content-Length is over it", async () => {
  await withApi(async ({ base, key }) => {
    const headers = { authorization: `Bearer ${key}`, "content-type": "application/json" };
    const res = await fetch(`${base}/api/v1/policy`, {
      method: "PUT",
      headers,
      body: policyBody(2 * 1048576),
    });
    assert.equal(res.status, 413);
    assert.equal(res.headers.get("connection"), "close");
    assert.deepEqual(await res.json(), {
      code: Code.ResourceExhausted,
      message: `request body is 2097152 bytes; ${LIMIT}`,
      details: [],
    });

    const big = await fetch(`${base}/api/v1/user`, {
      method: "POST",
      headers,
      body: new Uint8Array(10 * 1048576),
    });
    assert.equal(big.status, 413);
    assert.equal((await big.json()).message, `request body is 10485760 bytes; ${LIMIT}`);

    // Under the limit the policy is read and set as before.
    const ok = await fetch(`${base}/api/v1/policy`, {
      method: "PUT",
      headers,
      body: JSON.stringify({
        policy: '{"acls": [{"action": "accept", "src": ["*"], "dst": ["*:*"]}]}',
      }),
    });
    assert.equal(ok.status, 200, await ok.clone().text());
    await ok.body?.cancel();
  });
});

Deno.test("api limits: a chunked REST body that grows past the limit gets 413, then a close", async () => {
  await withApi(async ({ base, key }) => {
    const port = Number(new URL(base).port);
    const piece = new Uint8Array(64 * 1024).fill(0x61);
    const chunk = new Uint8Array([
      ...new TextEncoder().encode(`${piece.length.toString(16)}\r\n`),
      ...piece,
      ...new TextEncoder().encode("\r\n"),
    ]);
    const text = await rawExchange(
      port,
      `PUT /api/v1/policy HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${key}\r\n` +
        'Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{"a":\r\n',
      Array(24).fill(chunk), // 1.5 MiB
    );
    assert.match(text, /^HTTP\/1\.1 413 /);
    assert.match(text, /\r\nconnection: close\r\n/i);
    assert.ok(
      text.includes(`"message":"request body is over the limit of 1048576 bytes (1 MiB)"`),
      text,
    );
  });
});

Deno.test({
  name: "api limits: Connect and gRPC refuse a policy over the limit with ResourceExhausted",
  // connect-node's HTTP/2 sessions keep timers past the test body; the server close ends them.
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await withApi(async ({ base, grpcPort, key }) => {
      const transports: [string, Transport][] = [
        ["Connect/HTTP1.1", createConnectTransport({ baseUrl: base, httpVersion: "1.1" })],
        [
          "gRPC/h2c",
          createGrpcTransport({ baseUrl: `http://127.0.0.1:${grpcPort}` }),
        ],
      ];
      for (const [name, transport] of transports) {
        const client = createClient(HeadscaleService, transport);
        const headers = { authorization: `Bearer ${key}` };
        await assert.rejects(
          client.setPolicy({ policy: "a".repeat(2 * 1048576) }, { headers }),
          (e: unknown) => {
            assert.ok(e instanceof ConnectError, `${name}: ${e}`);
            assert.equal(e.code, Code.ResourceExhausted, `${name}: ${e.message}`);
            assert.match(e.rawMessage, /readMaxBytes 1048576\b/, name);
            return true;
          },
        );
        // The connection is still usable for a call of normal size.
        const { policy } = await client.getPolicy({}, { headers });
        assert.equal(typeof policy, "string", name);
      }
    });
  },
});

Deno.test("api limits: oversized headers on the API's own listener get 431", async () => {
  await withApi(async ({ grpcPort }) => {
    const text = await rawExchange(
      grpcPort,
      `GET /api/v1/user HTTP/1.1\r\nHost: x\r\nX-Big: ${"a".repeat(20_000)}\r\n\r\n`,
      [],
    );
    assert.match(text, /^HTTP\/1\.1 431 Request Header Fields Too Large\r\n/);
    assert.match(text, /\r\nconnection: close\r\n/i);
  });
});
