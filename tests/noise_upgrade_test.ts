import assert from "node:assert/strict";
import { createServer as createHttpServer } from "node:http";
import * as http2 from "node:http2";
import { connect, type Socket } from "node:net";
import { once } from "node:events";
import { noiseClientConnect } from "../lib/noise/client.ts";
import type { NoiseConn } from "../lib/noise/conn.ts";
import { startClientHandshake } from "../lib/noise/handshake.ts";
import { RecordSealer } from "../lib/noise/records.ts";
import { ts2021UpgradeHandler, type Ts2021UpgradeOptions } from "../lib/noise/upgrade.ts";
import { formatKey, generateKeyPair, parseKey } from "../lib/tailcfg/keys.ts";
import { createLogger } from "../lib/log/log.ts";

interface TestServer {
  port: number;
  serverKey: ReturnType<typeof generateKeyPair>;
  conns: NoiseConn[];
  close(): Promise<void>;
}

/**
 * node:http on 127.0.0.1 with /ts2021 upgrades, and a node:http2 server behind Noise that
 * answers every request with JSON {path, peer, bodyLength}. The peer is read from the HTTP/2
 * session's socket, which is the NoiseConn.
 */
async function startServer(
  extra: Partial<Ts2021UpgradeOptions> = {},
): Promise<TestServer> {
  const serverKey = generateKeyPair();
  const conns: NoiseConn[] = [];
  const h2 = http2.createServer();
  h2.on("stream", (stream, headers) => {
    let bodyLength = 0;
    stream.on("data", (d: Buffer) => bodyLength += d.length);
    stream.on("end", () => {
      const peer = (stream.session?.socket as unknown as NoiseConn).peerKeyText;
      stream.respond({ ":status": 200, "content-type": "application/json" });
      stream.end(
        JSON.stringify({ path: headers[":path"], peer, bodyLength, pad: "x".repeat(9000) }),
      );
    });
  });
  const http = createHttpServer();
  http.on(
    "upgrade",
    ts2021UpgradeHandler({
      serverPrivateKey: serverKey.privateKey,
      onConnection(conn) {
        conns.push(conn);
        h2.emit("connection", conn);
      },
      ...extra,
    }),
  );
  http.listen(0, "127.0.0.1");
  await once(http, "listening");
  return {
    port: (http.address() as { port: number }).port,
    serverKey,
    conns,
    async close() {
      for (const c of conns) c.destroy();
      http.closeAllConnections();
      await new Promise((r) => http.close(r));
      await new Promise((r) => h2.close(r));
    },
  };
}

/** A Noise connection to the test server (machine key and options as given). */
function noiseTo(srv: TestServer, capVersion = 145, machine = generateKeyPair()) {
  return noiseClientConnect({
    host: "127.0.0.1",
    port: srv.port,
    serverPublicKey: srv.serverKey.publicKey,
    machinePrivateKey: machine.privateKey,
    capVersion,
  });
}

async function dial(srv: TestServer, capVersion = 145, machine = generateKeyPair()) {
  const { conn, earlyPayload } = await noiseTo(srv, capVersion, machine);
  const session = http2.connect(`http://127.0.0.1:${srv.port}`, {
    createConnection: () => conn as unknown as Socket,
  });
  session.on("error", () => {});
  return { conn, earlyPayload, session, machine };
}

async function request(
  session: http2.ClientHttp2Session,
  path: string,
  body: Uint8Array = new Uint8Array(0),
): Promise<{ status: number; json: Record<string, unknown> }> {
  const req = session.request({ ":method": "POST", ":path": path });
  req.end(body);
  const [headers] = await once(req, "response");
  const chunks: Buffer[] = [];
  req.on("data", (d: Buffer) => chunks.push(d));
  await once(req, "end");
  return { status: headers[":status"], json: JSON.parse(Buffer.concat(chunks).toString()) };
}

/** Sends raw bytes, returns everything the server sent until it closed the socket. */
async function rawExchange(port: number, data: string | Uint8Array): Promise<Buffer> {
  const s = connect(port, "127.0.0.1");
  const chunks: Buffer[] = [];
  s.on("data", (d) => chunks.push(d));
  s.on("error", () => {});
  s.write(data);
  await once(s, "close");
  return Buffer.concat(chunks);
}

function upgradeRequest(
  port: number,
  handshakeHeader?: string,
  upgrade = "tailscale-control-protocol",
) {
  return `POST /ts2021 HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nUpgrade: ${upgrade}\r\n` +
    "Connection: upgrade\r\n" +
    (handshakeHeader === undefined ? "" : `X-Tailscale-Handshake: ${handshakeHeader}\r\n`) +
    "Content-Length: 0\r\n\r\n";
}

Deno.test("upgrade: full path, early payload then HTTP/2 over Noise from a node:http2 client", async () => {
  const srv = await startServer();
  try {
    const { conn, earlyPayload, session, machine } = await dial(srv);
    assert.ok(earlyPayload?.nodeKeyChallenge);
    parseKey(earlyPayload.nodeKeyChallenge, "chalpub");
    assert.deepEqual(conn.peerPublicKey, srv.serverKey.publicKey);

    // Two concurrent streams on the one connection, bodies larger than one record.
    const [a, b] = await Promise.all([
      request(session, "/machine/map", new Uint8Array(20_000).fill(7)),
      request(session, "/machine/register", new Uint8Array(5000)),
    ]);
    assert.equal(a.status, 200);
    assert.deepEqual([a.json.path, a.json.bodyLength], ["/machine/map", 20_000]);
    assert.deepEqual([b.json.path, b.json.bodyLength], ["/machine/register", 5000]);
    assert.equal(a.json.peer, formatKey(machine.publicKey, "mkey"));

    const server = srv.conns[0];
    assert.equal(server.protocolVersion, 145);
    assert.deepEqual(server.peerPublicKey, machine.publicKey);
    assert.deepEqual(server.handshakeHash, conn.handshakeHash);
    assert.ok(conn.recordCounts.sent >= 2 && conn.recordCounts.received >= 2);
    session.close();
  } finally {
    await srv.close();
  }
});

Deno.test("upgrade: without the early payload the client goes straight to HTTP/2", async () => {
  const srv = await startServer({ sendEarlyPayload: false });
  try {
    const { earlyPayload, session } = await dial(srv);
    assert.equal(earlyPayload, null);
    const r = await request(session, "/machine/whoami");
    assert.equal(r.json.path, "/machine/whoami");
    session.close();
  } finally {
    await srv.close();
  }
});

Deno.test("upgrade: a too-old client gets a Noise error frame, the server keeps serving", async () => {
  const srv = await startServer({ minCapVersion: 113 });
  try {
    await assert.rejects(
      dial(srv, 112),
      /server error: "unsupported client version: capability version 112 is older than 113"/,
    );
    const { session } = await dial(srv, 113);
    assert.equal((await request(session, "/ok")).status, 200);
    session.close();
  } finally {
    await srv.close();
  }
});

Deno.test("upgrade: bad upgrade requests get HTTP errors with a plain reason", async () => {
  const srv = await startServer();
  try {
    const cases: [string, RegExp][] = [
      [
        upgradeRequest(srv.port, "not base64!!"),
        /^HTTP\/1\.1 400 [^]*invalid tailscale handshake header\n$/,
      ],
      [upgradeRequest(srv.port, "AAAA="), /^HTTP\/1\.1 400 [^]*invalid tailscale handshake header/],
      [upgradeRequest(srv.port), /^HTTP\/1\.1 400 [^]*missing Tailscale handshake header/],
      [upgradeRequest(srv.port, "AAAA", "h2c"), /^HTTP\/1\.1 400 [^]*unknown next protocol/],
      [
        upgradeRequest(srv.port, "AAAA").replace("POST", "PUT"),
        /^HTTP\/1\.1 405 [^]*method not allowed/,
      ],
    ];
    for (const [req, want] of cases) {
      assert.match((await rawExchange(srv.port, req)).toString(), want);
    }
  } finally {
    await srv.close();
  }
});

Deno.test("upgrade: a malformed initiation or wrong server key gets 101 and an error frame", async () => {
  const srv = await startServer();
  try {
    const short = Buffer.alloc(50).toString("base64");
    const out = await rawExchange(srv.port, upgradeRequest(srv.port, short));
    const text = out.toString("latin1");
    assert.match(
      text,
      /^HTTP\/1\.1 101 Switching Protocols\r\nUpgrade: tailscale-control-protocol\r\n/,
    );
    const body = out.subarray(text.indexOf("\r\n\r\n") + 4);
    assert.equal(body[0], 0x03);
    assert.equal(body.subarray(3).toString(), "wrong handshake initiation size");
    assert.equal((body[1] << 8) | body[2], body.length - 3);

    await assert.rejects(
      noiseClientConnect({
        host: "127.0.0.1",
        port: srv.port,
        serverPublicKey: generateKeyPair().publicKey, // not the server's key
        machinePrivateKey: generateKeyPair().privateKey,
        capVersion: 145,
      }),
      /server error: "handshake failed"/,
    );
    assert.equal(srv.conns.length, 0);
  } finally {
    await srv.close();
  }
});

Deno.test("upgrade: GET works too", async () => {
  const srv = await startServer();
  try {
    const { conn } = await noiseClientConnect({
      host: "127.0.0.1",
      port: srv.port,
      serverPublicKey: srv.serverKey.publicKey,
      machinePrivateKey: generateKeyPair().privateKey,
      capVersion: 130,
      method: "GET",
    });
    assert.equal(srv.conns[0].protocolVersion, 130);
    conn.destroy();
  } finally {
    await srv.close();
  }
});

/** A raw Noise client over TCP: upgrade by hand, so the test can send arbitrary frames. */
async function rawNoise(srv: TestServer) {
  const hs = startClientHandshake({
    machinePrivateKey: generateKeyPair().privateKey,
    serverPublicKey: srv.serverKey.publicKey,
    version: 145,
  });
  const s = connect(srv.port, "127.0.0.1");
  s.on("error", () => {});
  const req = upgradeRequest(srv.port, Buffer.from(hs.initiation).toString("base64"));
  s.write(req);
  let buf = Buffer.alloc(0);
  while (true) {
    const [chunk] = await once(s, "data");
    buf = Buffer.concat([buf, chunk]);
    const end = buf.indexOf("\r\n\r\n");
    if (end >= 0 && buf.length >= end + 4 + 51) {
      const keys = hs.finish(buf.subarray(end + 4, end + 4 + 51));
      return { socket: s, sealer: new RecordSealer(keys.sendKey) };
    }
  }
}

Deno.test("upgrade: a tampered record closes that connection only", async () => {
  const lines: string[] = [];
  const srv = await startServer({
    log: createLogger({ level: "debug", write: (l) => lines.push(l) }),
  });
  try {
    const good = await dial(srv);
    const { socket, sealer } = await rawNoise(srv);
    const frame = sealer.seal(Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"));
    frame[10] ^= 0x40;
    const closed = once(socket, "close");
    socket.write(frame);
    await closed;
    const victim = srv.conns[1];
    await new Promise((r) => victim.destroyed ? r(null) : victim.once("close", r));
    assert.match(String(victim.closeError), /NoiseRecordError: record failed to decrypt/);
    assert.ok(lines.some((l) => /ts2021 connection failed.*record failed to decrypt/.test(l)));
    const secret = Buffer.from(srv.serverKey.privateKey).toString("hex");
    assert.ok(!lines.some((l) => l.includes(secret)), "the server key is never logged");

    // The other connection and new ones still work.
    assert.equal((await request(good.session, "/still")).json.path, "/still");
    const fresh = await dial(srv);
    assert.equal((await request(fresh.session, "/new")).json.path, "/new");
    good.session.close();
    fresh.session.close();
  } finally {
    await srv.close();
  }
});

Deno.test("upgrade: bytes pipelined after the request head reach the record parser", async () => {
  const srv = await startServer();
  try {
    // A client cannot have record keys before the response, so anything pipelined is junk.
    const init = startClientHandshake({
      machinePrivateKey: generateKeyPair().privateKey,
      serverPublicKey: srv.serverKey.publicKey,
      version: 145,
    }).initiation;
    const req = upgradeRequest(srv.port, Buffer.from(init).toString("base64"));
    await rawExchange(srv.port, Buffer.concat([Buffer.from(req), Uint8Array.of(5, 0, 0)]));
    assert.equal(srv.conns.length, 1);
    const conn = srv.conns[0];
    await new Promise((r) => conn.destroyed ? r(null) : conn.once("close", r));
    assert.match(String(conn.closeError), /unexpected type 5/);
  } finally {
    await srv.close();
  }
});

Deno.test("upgrade: an upgrade read after the client's dial timeout is dropped without a handshake", async () => {
  let connectedAt = 0;
  const srv = await startServer({ connectedAt: () => connectedAt });
  try {
    connectedAt = performance.now() - 11_000; // as if it waited behind a restart storm
    await assert.rejects(noiseTo(srv));
    assert.equal(srv.conns.length, 0, "no handshake, no connection");
    connectedAt = performance.now();
    const { conn } = await noiseTo(srv);
    assert.equal(srv.conns.length, 1);
    conn.destroy();
  } finally {
    await srv.close();
  }
});
