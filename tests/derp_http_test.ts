import assert from "node:assert/strict";
import net from "node:net";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import { startTestDerp } from "./helpers/derp.ts";
import { createBootstrapDnsHandler, createVerifyHandler } from "../lib/derp/http.ts";
import { FrameType, MAGIC } from "../lib/derp/frame.ts";
import { webSocketAccept } from "../lib/derp/websocket.ts";

/**
 * A whole HTTP response: its head, and its body when Content-Length or chunked encoding says
 * there is one (a 101 has none: what follows belongs to the upgraded protocol).
 */
function httpResponseComplete(b: Uint8Array): boolean {
  const t = new TextDecoder().decode(b);
  const end = t.indexOf("\r\n\r\n");
  if (end < 0) return false;
  const head = t.slice(0, end).toLowerCase();
  if (/^http\/1\.1 101 /.test(head)) return true;
  const length = /\r\ncontent-length: *(\d+)/.exec(head);
  if (length) return b.length - (end + 4) >= Number(length[1]);
  if (/\r\ntransfer-encoding: *chunked/.test(head)) return t.endsWith("0\r\n\r\n");
  return false;
}

/**
 * Sends a raw HTTP request and returns what came back once `complete` says it is all there or
 * the server closed the connection (an upgraded one stays open). Waits as long as that takes,
 * up to a deadline that only a server that never answers reaches.
 */
function rawExchange(
  port: number,
  request: string,
  complete: (received: Uint8Array) => boolean = httpResponseComplete,
): Promise<Uint8Array> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, "127.0.0.1");
    const parts: Uint8Array[] = [];
    const received = () => {
      const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
      let off = 0;
      for (const p of parts) {
        out.set(p, off);
        off += p.length;
      }
      return out;
    };
    const done = () => {
      clearTimeout(timer);
      s.destroy();
      resolve(received());
    };
    const timer = setTimeout(() => {
      s.destroy();
      const got = JSON.stringify(new TextDecoder().decode(received()));
      reject(new Error(`no complete answer to ${JSON.stringify(request)} in 20 s: ${got}`));
    }, 20_000);
    s.on("data", (c: Uint8Array) => {
      parts.push(c);
      if (complete(received())) done();
    });
    s.on("error", reject);
    s.on("connect", () => s.write(request));
    s.on("close", done);
  });
}

const text = (b: Uint8Array) => new TextDecoder().decode(b);

Deno.test("derp http: upgrade variants get 101, 426 or 400 as Tailscale's handler does", async () => {
  const d = await startTestDerp();
  try {
    const plain = text(await rawExchange(d.port, "GET /derp HTTP/1.1\r\nHost: x\r\n\r\n"));
    assert.match(plain, /^HTTP\/1\.1 426/);
    assert.match(plain, /DERP requires connection upgrade/);

    const odd = text(
      await rawExchange(
        d.port,
        "GET /derp HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n",
      ),
    );
    assert.match(odd, /^HTTP\/1\.1 426/);

    const mixedCase = text(
      await rawExchange(
        d.port,
        "GET /derp HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: dErP\r\n\r\n",
      ),
    );
    assert.match(mixedCase, /^HTTP\/1\.1 101 Switching Protocols\r\n/);
    assert.match(mixedCase, /\r\nDerp-Version: 2\r\n/);
    assert.ok(mixedCase.includes(`\r\nDerp-Public-Key: ${d.server.publicKeyHex}\r\n`));

    // "websocket" without the derp subprotocol: very old clients speaking plain DERP.
    const oldStyle = text(
      await rawExchange(
        d.port,
        "GET /derp HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: WebSocket\r\n\r\n",
      ),
    );
    assert.match(oldStyle, /^HTTP\/1\.1 101/);
    assert.match(oldStyle, /Derp-Version: 2/);

    const badWs = text(
      await rawExchange(
        d.port,
        "GET /derp HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n" +
          "Sec-WebSocket-Protocol: derp\r\nSec-WebSocket-Key: short\r\n" +
          "Sec-WebSocket-Version: 13\r\n\r\n",
      ),
    );
    assert.match(badWs, /^HTTP\/1\.1 400/);

    const key = "dGhlIHNhbXBsZSBub25jZQ==";
    const ws = text(
      await rawExchange(
        d.port,
        "GET /derp HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n" +
          `Sec-WebSocket-Protocol: derp\r\nSec-WebSocket-Key: ${key}\r\n` +
          "Sec-WebSocket-Version: 13\r\n\r\n",
      ),
    );
    assert.match(ws, /^HTTP\/1\.1 101/);
    // RFC 6455's own example key and answer.
    assert.equal(webSocketAccept(key), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    assert.ok(ws.includes("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
    assert.ok(ws.includes("Sec-WebSocket-Protocol: derp\r\n"));
  } finally {
    await d.close();
  }
});

Deno.test("derp http: Derp-Fast-Start skips the HTTP response; frames start at once", async () => {
  const d = await startTestDerp();
  try {
    const got = await rawExchange(
      d.port,
      "GET /derp HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: DERP\r\n" +
        "Derp-Fast-Start: 1\r\n\r\n",
      (b) => b.length >= 45, // the ServerKey frame: header, magic, key
    );
    assert.equal(got[0], FrameType.ServerKey);
    assert.deepEqual(got.subarray(5, 13), MAGIC);
    assert.deepEqual(got.subarray(13, 45), d.server.publicKey);
  } finally {
    await d.close();
  }
});

Deno.test("derp http: probe, latency-check and generate_204", async () => {
  const d = await startTestDerp();
  const base = `http://127.0.0.1:${d.port}`;
  try {
    for (const path of ["/derp/probe", "/derp/latency-check"]) {
      for (const method of ["GET", "HEAD"]) {
        const r = await fetch(base + path, { method });
        await r.body?.cancel();
        assert.equal(r.status, 200, `${method} ${path}`);
        assert.equal(r.headers.get("access-control-allow-origin"), "*");
      }
      const post = await fetch(base + path, { method: "POST" });
      await post.body?.cancel();
      assert.equal(post.status, 405);
    }
    const plain = await fetch(base + "/generate_204");
    assert.equal(plain.status, 204);
    assert.equal(
      plain.headers.get("cache-control"),
      "no-cache, no-store, must-revalidate, no-transform, max-age=0",
    );
    assert.equal(plain.headers.get("x-tailscale-response"), null);
    const challenged = await fetch(base + "/generate_204", {
      headers: { "x-tailscale-challenge": "abc.DEF_12:3-4" },
    });
    assert.equal(challenged.headers.get("x-tailscale-response"), "response abc.DEF_12:3-4");
    for (const bad of ["has space", "x".repeat(65), "semi;colon"]) {
      const r = await fetch(base + "/generate_204", { headers: { "x-tailscale-challenge": bad } });
      assert.equal(r.headers.get("x-tailscale-response"), null, bad);
    }
  } finally {
    await d.close();
  }
});

async function serve(handler: (req: IncomingMessage, res: ServerResponse) => unknown) {
  const server = createServer((req, res) => {
    Promise.resolve(handler(req, res)).catch(() => res.destroy());
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const port = (server.address() as { port: number }).port;
  return {
    base: `http://127.0.0.1:${port}`,
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}

Deno.test("derp http: POST /verify answers DERPAdmitClientRequest with the same callback", async () => {
  const known = "nodekey:" + "ab".repeat(32);
  const seen: string[] = [];
  const s = await serve(createVerifyHandler((key, info) => {
    seen.push(info.remoteAddress);
    if (key === "nodekey:" + "ee".repeat(32)) throw new Error("store down");
    return Promise.resolve(key === known);
  }));
  const post = (body: string) =>
    fetch(s.base + "/verify", {
      method: "POST",
      body,
      headers: { "content-type": "application/json", connection: "close" },
    });
  try {
    const yes = await post(JSON.stringify({ NodePublic: known, Source: "192.0.2.1" }));
    assert.equal(yes.status, 200);
    assert.equal(yes.headers.get("content-type"), "application/json");
    assert.deepEqual(await yes.json(), { Allow: true });
    assert.deepEqual(seen, ["192.0.2.1"]);

    const no = await post(JSON.stringify({ NodePublic: "nodekey:" + "cd".repeat(32) }));
    assert.deepEqual(await no.json(), { Allow: false });
    const broken = await post(JSON.stringify({ NodePublic: "nodekey:" + "ee".repeat(32) }));
    assert.deepEqual(await broken.json(), { Allow: false }, "errors deny");

    for (const bad of ["{", JSON.stringify({ NodePublic: "mkey:" + "00".repeat(32) }), "null"]) {
      const r = await post(bad);
      assert.equal(r.status, 400, bad);
      await r.body?.cancel();
    }
    const big = await post(JSON.stringify({ NodePublic: known, pad: "x".repeat(10_000) }));
    assert.equal(big.status, 413);
    await big.body?.cancel();
    const get = await fetch(s.base + "/verify");
    assert.equal(get.status, 405);
    await get.body?.cancel();
  } finally {
    await s.close();
  }
});

Deno.test("derp http: /bootstrap-dns answers from cached lookups of the map's host names", async () => {
  const lookups: string[] = [];
  const s = await serve(createBootstrapDnsHandler({
    hostNames: () => ["derp.example.com", "b.example.com", "derp.example.com", "dead.example"],
    resolve: (host) => {
      lookups.push(host);
      if (host === "dead.example") return Promise.reject(new Error("NXDOMAIN"));
      return Promise.resolve(
        host === "b.example.com" ? ["192.0.2.2"] : ["192.0.2.1", "2001:db8::1"],
      );
    },
  }));
  try {
    const all = await (await fetch(s.base + "/bootstrap-dns")).json();
    assert.deepEqual(all, {
      "b.example.com": ["192.0.2.2"],
      "derp.example.com": ["192.0.2.1", "2001:db8::1"],
    });
    const one = await (await fetch(s.base + "/bootstrap-dns?q=b.example.com")).json();
    assert.deepEqual(one, { "b.example.com": ["192.0.2.2"] });
    assert.deepEqual(lookups.sort(), ["b.example.com", "dead.example", "derp.example.com"]);
  } finally {
    await s.close();
  }
});
