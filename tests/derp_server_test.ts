import assert from "node:assert/strict";
import { DerpClient, type DerpMessage, openDerpStream } from "../lib/derp/client.ts";
import { encodeFrame, FrameType, MAGIC, PeerGoneReason } from "../lib/derp/frame.ts";
import { startTestDerp } from "./helpers/derp.ts";
import { BoxPrivateKey, sealBox } from "../lib/derp/naclbox.ts";

const te = new TextEncoder();

function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout>;
  return Promise.race([
    p.finally(() => clearTimeout(timer)),
    new Promise<T>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), ms);
    }),
  ]);
}

/** Messages already queued on a client (after a ping round trip, everything sent before it). */
async function drainQueued(c: DerpClient): Promise<DerpMessage[]> {
  const out: DerpMessage[] = [];
  for (;;) {
    try {
      out.push(await c.recv(50));
    } catch {
      return out;
    }
  }
}

function discoPacket(): Uint8Array {
  const p = new Uint8Array(6 + 32 + 24 + 16);
  p.set([0x54, 0x53, 0xf0, 0x9f, 0x92, 0xac]);
  return p;
}

Deno.test("derp: handshake gives the server key and an encrypted ServerInfo", async () => {
  const d = await startTestDerp();
  try {
    const up = await openDerpStream(d.url);
    assert.equal(up.status, 101);
    assert.equal(up.headers["derp-version"], "2");
    assert.equal(up.headers["derp-public-key"], d.server.publicKeyHex);
    up.stream.destroy();

    const c = await DerpClient.connect({ url: d.url });
    assert.deepEqual(c.serverPublicKey, d.server.publicKey);
    const info = await c.recvType("serverInfo");
    assert.equal(info.info.version, 2);
    assert.equal(d.server.isConnected(c.nodeKey), true);
    await c.close();
  } finally {
    await d.close();
  }
});

Deno.test("derp: packets are forwarded with the sender's key, in order, up to 64 KiB", async () => {
  const d = await startTestDerp();
  const a = await DerpClient.connect({ url: d.url });
  const b = await DerpClient.connect({ url: d.url });
  try {
    await a.recvType("serverInfo");
    await b.recvType("serverInfo");
    const sizes = [0, 1, 1280, 1500, 9000, 65536];
    const sent = sizes.map((n, i) => crypto.getRandomValues(new Uint8Array(n)).fill(i, 0, 1));
    for (const p of sent) a.send(b.publicKey, p);
    for (const p of sent) {
      const m = await b.recvType("packet");
      assert.deepEqual(m.source, a.publicKey);
      assert.deepEqual(m.data, p);
    }
    b.send(a.publicKey, te.encode("reply"));
    const r = await a.recvType("packet");
    assert.deepEqual(r.source, b.publicKey);
    assert.equal(new TextDecoder().decode(r.data), "reply");
    const s = d.server.stats();
    assert.equal(s.packetsForwarded, sizes.length + 1);
    assert.equal(s.clients, 2);
  } finally {
    await a.close();
    await b.close();
    await d.close();
  }
});

Deno.test("derp: ping gets a pong with the same 8 bytes (extra ping bytes ignored)", async () => {
  const d = await startTestDerp();
  const c = await DerpClient.connect({ url: d.url });
  try {
    await c.recvType("serverInfo");
    const rtt = await c.ping();
    assert.ok(rtt >= 0);
    const body = Uint8Array.from({ length: 20 }, (_, i) => i + 1);
    c.writeRaw(encodeFrame(FrameType.Ping, body));
    const pong = await c.recvType("pong");
    assert.deepEqual(pong.data, body.subarray(0, 8));
  } finally {
    await c.close();
    await d.close();
  }
});

Deno.test("derp: a leaving sender is reported to its receivers as PeerGone(disconnected)", async () => {
  const d = await startTestDerp();
  const a = await DerpClient.connect({ url: d.url });
  const b = await DerpClient.connect({ url: d.url });
  const c = await DerpClient.connect({ url: d.url });
  try {
    a.send(b.publicKey, te.encode("x"));
    await b.recvType("packet");
    await a.close();
    const gone = await b.recvType("peerGone");
    assert.deepEqual(gone.peer, a.publicKey);
    assert.equal(gone.reason, PeerGoneReason.Disconnected);
    // c never heard from a: no PeerGone for it.
    await c.ping();
    assert.ok(!(await drainQueued(c)).some((m) => m.type === "peerGone"));
  } finally {
    await b.close();
    await c.close();
    await d.close();
  }
});

Deno.test("derp: disco to an absent peer gets PeerGone(not here), rate-limited; data gets none", async () => {
  const d = await startTestDerp();
  const a = await DerpClient.connect({ url: d.url });
  try {
    await a.recvType("serverInfo");
    const absent = crypto.getRandomValues(new Uint8Array(32));
    a.send(absent, te.encode("plain data packet"));
    await a.ping();
    assert.deepEqual(await drainQueued(a), []);
    for (let i = 0; i < 10; i++) a.send(absent, discoPacket());
    await a.ping();
    const gone = (await drainQueued(a)).filter((m) => m.type === "peerGone");
    assert.equal(gone.length, 3, "burst of 3, then 1 per second");
    for (const g of gone) {
      assert.equal(g.type === "peerGone" && g.reason, PeerGoneReason.NotHere);
      assert.deepEqual(g.type === "peerGone" && g.peer, absent);
    }
    assert.equal(d.server.stats().droppedUnknownDest, 11);
  } finally {
    await a.close();
    await d.close();
  }
});

Deno.test("derp: verifyClient refusal closes the connection before ServerInfo", async () => {
  const asked: string[] = [];
  const d = await startTestDerp({
    verifyClient: (key) => {
      asked.push(key);
      return Promise.resolve(false);
    },
  });
  try {
    const c = await DerpClient.connect({ url: d.url });
    await within(c.closed, 3000, "refused connection to close");
    assert.deepEqual(asked, [c.nodeKey]);
    await assert.rejects(c.recv(100));
    assert.equal(d.server.stats().rejected, 1);
    assert.equal(d.server.isConnected(c.nodeKey), false);
  } finally {
    await d.close();
  }
});

Deno.test("derp: verifyClient that throws refuses; one that allows admits", async () => {
  let allow: "yes" | "throw" = "throw";
  const d = await startTestDerp({
    verifyClient: () => {
      if (allow === "throw") throw new Error("lookup failed");
      return true;
    },
  });
  try {
    const refused = await DerpClient.connect({ url: d.url });
    await within(refused.closed, 3000, "refused connection to close");
    allow = "yes";
    const admitted = await DerpClient.connect({ url: d.url });
    await admitted.recvType("serverInfo");
    await admitted.ping();
    await admitted.close();
  } finally {
    await d.close();
  }
});

Deno.test("derp: a client that never sends ClientInfo is closed after the deadline", async () => {
  const d = await startTestDerp({ handshakeTimeoutMs: 150 });
  try {
    const up = await openDerpStream(d.url);
    const got: Uint8Array[] = [up.head];
    up.stream.on("data", (c: Uint8Array) => got.push(c));
    await within(new Promise((r) => up.stream.on("close", r)), 3000, "server to close");
    const all = new Uint8Array(got.reduce((n, c) => n + c.length, 0));
    let off = 0;
    for (const c of got) {
      all.set(c, off);
      off += c.length;
    }
    assert.equal(all[0], FrameType.ServerKey, "the server spoke first");
    assert.deepEqual(all.subarray(5, 13), MAGIC);
    assert.equal(d.server.stats().handshakeFailures, 1);
    assert.equal(d.server.stats().connections, 0);
  } finally {
    await d.close();
  }
});

/** Upgrades and reads the ServerKey frame; returns the stream for hand-made input. */
async function rawConnection(url: string) {
  const up = await openDerpStream(url);
  let closed = false;
  up.stream.on("data", () => {});
  const closedP = new Promise<void>((r) =>
    up.stream.on("close", () => {
      closed = true;
      r();
    })
  );
  return { stream: up.stream, closed: closedP, isClosed: () => closed };
}

Deno.test("derp: malformed handshakes are refused without harming the server", async () => {
  const d = await startTestDerp();
  try {
    const cases: [string, Uint8Array][] = [
      ["first frame not ClientInfo", encodeFrame(FrameType.SendPacket, new Uint8Array(40))],
      ["short ClientInfo", encodeFrame(FrameType.ClientInfo, new Uint8Array(40))],
      ["ClientInfo that does not open", encodeFrame(FrameType.ClientInfo, new Uint8Array(100))],
      [
        "oversized ClientInfo header",
        Uint8Array.of(FrameType.ClientInfo, 0x00, 0x10, 0x00, 0x00),
      ],
    ];
    for (const [what, bytes] of cases) {
      const r = await rawConnection(d.url);
      r.stream.write(bytes);
      await within(r.closed, 3000, what);
    }
    // A box that opens but holds no JSON object.
    const priv = crypto.getRandomValues(new Uint8Array(32));
    const key = new BoxPrivateKey(priv);
    const nonce = new Uint8Array(24);
    const box = sealBox(key.sharedKey(d.server.publicKey), nonce, te.encode("not json"));
    const r = await rawConnection(d.url);
    r.stream.write(encodeFrame(FrameType.ClientInfo, key.publicKey, nonce, box));
    await within(r.closed, 3000, "non-JSON ClientInfo");
    assert.equal(d.server.stats().handshakeFailures, cases.length + 1);

    const ok = await DerpClient.connect({ url: d.url });
    await ok.ping();
    await ok.close();
  } finally {
    await d.close();
  }
});

Deno.test("derp: truncated and oversized frames close only the offending client", async () => {
  const d = await startTestDerp();
  const good = await DerpClient.connect({ url: d.url });
  try {
    const bad: [string, Uint8Array][] = [
      // SendPacket header promising 64 KiB + 1 byte of packet.
      ["oversized SendPacket", Uint8Array.of(FrameType.SendPacket, 0, 1, 0, 33)],
      ["SendPacket shorter than a key", encodeFrame(FrameType.SendPacket, new Uint8Array(10))],
      ["ping over 1000 bytes", encodeFrame(FrameType.Ping, new Uint8Array(1001))],
      ["short ping", encodeFrame(FrameType.Ping, new Uint8Array(4))],
      ["NotePreferred of 2 bytes", encodeFrame(FrameType.NotePreferred, new Uint8Array(2))],
      ["mesh frame without mesh key", encodeFrame(FrameType.WatchConns)],
    ];
    for (const [what, bytes] of bad) {
      const c = await DerpClient.connect({ url: d.url });
      await c.recvType("serverInfo");
      c.writeRaw(bytes);
      await within(c.closed, 3000, what);
    }
    // Truncated: a frame header promising more than ever arrives, then the client hangs up.
    const t = await DerpClient.connect({ url: d.url });
    await t.recvType("serverInfo");
    t.writeRaw(Uint8Array.of(FrameType.SendPacket, 0, 0, 1, 0, 1, 2, 3));
    await t.close();
    await good.ping();
    assert.equal(d.server.stats().clients, 1);
  } finally {
    await good.close();
    await d.close();
  }
});

Deno.test("derp: unknown frame types are skipped, even large ones split over writes", async () => {
  const d = await startTestDerp();
  const a = await DerpClient.connect({ url: d.url });
  const b = await DerpClient.connect({ url: d.url });
  try {
    await b.recvType("serverInfo");
    a.writeRaw(encodeFrame(0x7f, te.encode("future")));
    const big = encodeFrame(0x42, new Uint8Array(3 << 20));
    for (let off = 0; off < big.length; off += 100_000) {
      a.writeRaw(big.subarray(off, off + 100_000));
    }
    a.writeRaw(encodeFrame(FrameType.Pong, new Uint8Array(8)));
    a.send(b.publicKey, te.encode("after unknown frames"));
    const m = await b.recvType("packet");
    assert.equal(new TextDecoder().decode(m.data), "after unknown frames");
    await a.ping();
  } finally {
    await a.close();
    await b.close();
    await d.close();
  }
});

Deno.test("derp: frames split at every byte boundary still parse", async () => {
  const d = await startTestDerp();
  const a = await DerpClient.connect({ url: d.url });
  const b = await DerpClient.connect({ url: d.url });
  try {
    await b.recvType("serverInfo");
    const payload = te.encode("byte by byte");
    const frame = encodeFrame(FrameType.SendPacket, b.publicKey, payload);
    for (const byte of frame) {
      a.writeRaw(Uint8Array.of(byte));
      await new Promise((r) => setTimeout(r, 0));
    }
    const m = await b.recvType("packet");
    assert.deepEqual(m.data, payload);
  } finally {
    await a.close();
    await b.close();
    await d.close();
  }
});

Deno.test("derp: with one key connected twice the newest connection gets the packets", async () => {
  const d = await startTestDerp();
  const priv = crypto.getRandomValues(new Uint8Array(32));
  const sender = await DerpClient.connect({ url: d.url });
  const old = await DerpClient.connect({ url: d.url, privateKey: priv });
  try {
    await old.recvType("serverInfo");
    const newer = await DerpClient.connect({ url: d.url, privateKey: priv });
    await newer.recvType("serverInfo");
    const health = await old.recvType("health");
    assert.match(health.problem, /more than once/);
    sender.send(newer.publicKey, te.encode("to newest"));
    assert.equal(new TextDecoder().decode((await newer.recvType("packet")).data), "to newest");
    await newer.close();
    const cleared = await old.recvType("health");
    assert.equal(cleared.problem, "");
    sender.send(old.publicKey, te.encode("to remaining"));
    assert.equal(new TextDecoder().decode((await old.recvType("packet")).data), "to remaining");
    assert.equal(d.server.stats().uniqueKeys, 2);
  } finally {
    await sender.close();
    await old.close();
    await d.close();
  }
});

Deno.test("derp: WebSocket clients relay to and from plain DERP clients", async () => {
  const d = await startTestDerp();
  const ws = await DerpClient.connect({ url: d.url, websocket: true });
  const plain = await DerpClient.connect({ url: d.url });
  try {
    await ws.recvType("serverInfo");
    await plain.recvType("serverInfo");
    const big = crypto.getRandomValues(new Uint8Array(60_000));
    ws.send(plain.publicKey, big);
    assert.deepEqual((await plain.recvType("packet")).data, big);
    plain.send(ws.publicKey, te.encode("back"));
    assert.equal(new TextDecoder().decode((await ws.recvType("packet")).data), "back");
    await ws.ping();
  } finally {
    await ws.close();
    await plain.close();
    await d.close();
  }
});

Deno.test("derp: keepalives arrive on the configured interval", async () => {
  const d = await startTestDerp({ keepAliveMs: 60 });
  const c = await DerpClient.connect({ url: d.url });
  try {
    await c.recvType("keepAlive", 3000);
    await c.recvType("keepAlive", 3000);
  } finally {
    await c.close();
    await d.close();
  }
});

Deno.test("derp: close() sends Restarting and closes every client", async () => {
  const d = await startTestDerp({ restart: { reconnectInMs: 250, tryForMs: 4000 } });
  const c = await DerpClient.connect({ url: d.url });
  await c.recvType("serverInfo");
  c.notePreferred(true);
  await c.ping();
  assert.equal(d.server.stats().homeClients, 1);
  await d.close();
  const m = await c.recvType("restarting");
  assert.equal(m.reconnectInMs, 250);
  assert.equal(m.tryForMs, 4000);
  await within(c.closed, 3000, "client to be closed");
  assert.equal(d.server.stats().connections, 0);
});

Deno.test("derp: a reader that stops reading loses packets but blocks no one", async () => {
  const d = await startTestDerp({ maxQueuedBytes: 64 << 10 });
  const a = await DerpClient.connect({ url: d.url });
  const c = await DerpClient.connect({ url: d.url });
  // The stuck reader: a raw connection that finishes the handshake, then never reads again.
  const key = new BoxPrivateKey(crypto.getRandomValues(new Uint8Array(32)));
  const up = await openDerpStream(d.url);
  const nonce = new Uint8Array(24);
  const box = sealBox(key.sharedKey(d.server.publicKey), nonce, te.encode("{}"));
  up.stream.write(encodeFrame(FrameType.ClientInfo, key.publicKey, nonce, box));
  up.stream.pause();
  try {
    await c.recvType("serverInfo");
    // Its ClientInfo is in: wait until the server has it (as long as a slow machine needs).
    const stuck = "nodekey:" + hex(key.publicKey);
    const deadline = Date.now() + 10_000;
    while (!d.server.isConnected(stuck)) {
      assert.ok(Date.now() < deadline, "the stuck reader's handshake was accepted");
      await new Promise((r) => setTimeout(r, 25));
    }
    const packet = new Uint8Array(60_000);
    for (let round = 0; round < 40 && d.server.stats().droppedQueueFull === 0; round++) {
      for (let i = 0; i < 64; i++) a.send(key.publicKey, packet);
      await a.drain();
      await a.ping();
    }
    assert.ok(d.server.stats().droppedQueueFull > 0, "packets to the stuck reader were dropped");
    a.send(c.publicKey, te.encode("still flowing"));
    assert.equal(new TextDecoder().decode((await c.recvType("packet")).data), "still flowing");
  } finally {
    up.stream.destroy();
    await a.close();
    await c.close();
    await d.close();
  }
});

function hex(b: Uint8Array): string {
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
}
