import assert from "node:assert/strict";
import { createServer as createHttpServer } from "node:http";
import * as http2 from "node:http2";
import { once } from "node:events";
import type { Socket } from "node:net";
import { Duplex } from "node:stream";
import { NoiseConn } from "../lib/noise/conn.ts";
import { startClientHandshake } from "../lib/noise/handshake.ts";
import { RecordOpener, RecordSealer } from "../lib/noise/records.ts";
import { ts2021UpgradeHandler } from "../lib/noise/upgrade.ts";
import { encodeFrame, websocketAccept, WebSocketStream } from "../lib/noise/websocket.ts";
import { generateKeyPair } from "../lib/tailcfg/keys.ts";

async function startServer(minCapVersion = 113) {
  const serverKey = generateKeyPair();
  const conns: NoiseConn[] = [];
  const transports: string[] = [];
  const h2 = http2.createServer();
  h2.on("stream", (stream, headers) => {
    const peer = (stream.session?.socket as unknown as NoiseConn).peerKeyText;
    stream.respond({ ":status": 200 });
    stream.end(`${headers[":path"]} ${peer} ${"y".repeat(6000)}`);
  });
  const http = createHttpServer();
  http.on(
    "upgrade",
    ts2021UpgradeHandler({
      serverPrivateKey: serverKey.privateKey,
      minCapVersion,
      onConnection(conn, info) {
        conns.push(conn);
        transports.push(info.transport);
        h2.emit("connection", conn);
      },
    }),
  );
  http.listen(0, "127.0.0.1");
  await once(http, "listening");
  return {
    port: (http.address() as { port: number }).port,
    serverKey,
    conns,
    transports,
    async close() {
      for (const c of conns) c.destroy();
      http.closeAllConnections();
      await new Promise((r) => http.close(r));
      await new Promise((r) => h2.close(r));
    },
  };
}

/** A Duplex over Deno's own (independent) WebSocket client: bytes in binary messages. */
function webSocketDuplex(ws: WebSocket): Duplex {
  const d = new Duplex({
    read() {},
    write(chunk, _enc, cb) {
      ws.send(chunk);
      cb();
    },
    final(cb) {
      ws.close();
      cb();
    },
    destroy(err, cb) {
      if (ws.readyState < WebSocket.CLOSING) ws.close();
      cb(err);
    },
  });
  ws.addEventListener("message", (e) => d.push(new Uint8Array(e.data as ArrayBuffer)));
  ws.addEventListener("close", () => d.push(null));
  return d;
}

function openWebSocket(url: string, protocols: string[]) {
  const ws = new WebSocket(url, protocols);
  ws.binaryType = "arraybuffer";
  const messages: Uint8Array[] = [];
  ws.addEventListener("message", (e) => messages.push(new Uint8Array(e.data as ArrayBuffer)));
  const opened = new Promise<boolean>((resolve) => {
    ws.addEventListener("open", () => resolve(true));
    ws.addEventListener("error", () => resolve(false));
  });
  const closed = new Promise<CloseEvent>((r) => ws.addEventListener("close", (e) => r(e)));
  return { ws, messages, opened, closed };
}

const wsUrl = (port: number, init: Uint8Array) =>
  `ws://127.0.0.1:${port}/ts2021?X-Tailscale-Handshake=` +
  encodeURIComponent(Buffer.from(init).toString("base64"));

Deno.test("websocket: handshake, then HTTP/2 over Noise over binary messages", async () => {
  const srv = await startServer();
  try {
    const machine = generateKeyPair();
    const hs = startClientHandshake({
      machinePrivateKey: machine.privateKey,
      serverPublicKey: srv.serverKey.publicKey,
      version: 140,
    });
    const { ws, messages, opened, closed } = openWebSocket(wsUrl(srv.port, hs.initiation), [
      "tailscale-control-protocol",
    ]);
    assert.ok(await opened);
    assert.equal(ws.protocol, "tailscale-control-protocol");
    while (messages.length === 0) await new Promise((r) => setTimeout(r, 5));
    // The response is a message of its own; the server's HTTP/2 SETTINGS may follow already.
    assert.equal(messages[0].length, 51);
    const keys = hs.finish(messages[0]);
    const head = Buffer.concat(messages.slice(1));

    const duplex = webSocketDuplex(ws);
    const conn = new NoiseConn({
      socket: duplex,
      sealer: new RecordSealer(keys.sendKey),
      opener: new RecordOpener(keys.receiveKey),
      peerPublicKey: keys.peerPublicKey,
      protocolVersion: keys.version,
      handshakeHash: keys.handshakeHash,
      head,
    });
    const session = http2.connect(`http://127.0.0.1:${srv.port}`, {
      createConnection: () => conn as unknown as Socket,
    });
    session.on("error", () => {});
    const req = session.request({ ":method": "POST", ":path": "/machine/map" });
    req.end(new Uint8Array(9000));
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    await once(req, "end");
    const text = Buffer.concat(chunks).toString();
    // No early payload on WebSocket: HTTP/2 parsed the first bytes, so none was sent.
    assert.ok(text.startsWith(`/machine/map ${srv.conns[0].peerKeyText} yyy`));
    assert.deepEqual(srv.conns[0].peerPublicKey, machine.publicKey);
    assert.equal(srv.conns[0].protocolVersion, 140);
    assert.deepEqual(srv.transports, ["websocket"]);
    session.destroy();
    conn.destroy();
    await closed;
  } finally {
    await srv.close();
  }
});

Deno.test("websocket: no subprotocol or no handshake parameter → refused", async () => {
  const srv = await startServer();
  try {
    const init = startClientHandshake({
      machinePrivateKey: generateKeyPair().privateKey,
      serverPublicKey: srv.serverKey.publicKey,
      version: 140,
    }).initiation;
    const noProto = openWebSocket(wsUrl(srv.port, init), []);
    assert.equal(await noProto.opened, false);
    await noProto.closed;
    const noInit = openWebSocket(`ws://127.0.0.1:${srv.port}/ts2021`, [
      "tailscale-control-protocol",
    ]);
    assert.equal(await noInit.opened, false);
    await noInit.closed;
    assert.equal(srv.conns.length, 0);
  } finally {
    await srv.close();
  }
});

Deno.test("websocket: a too-old client gets the error frame in a message, then a close", async () => {
  const srv = await startServer(113);
  try {
    const init = startClientHandshake({
      machinePrivateKey: generateKeyPair().privateKey,
      serverPublicKey: srv.serverKey.publicKey,
      version: 100,
    }).initiation;
    const { opened, closed, messages } = openWebSocket(wsUrl(srv.port, init), [
      "tailscale-control-protocol",
    ]);
    assert.ok(await opened);
    const ev = await closed;
    assert.equal(ev.code, 1000);
    const body = Buffer.concat(messages);
    assert.equal(body[0], 0x03);
    assert.match(body.subarray(3).toString(), /unsupported client version/);
  } finally {
    await srv.close();
  }
});

/** Masked client frame. */
function clientFrame(opcode: number, payload: Uint8Array, fin = true): Buffer {
  const mask = Buffer.from([1, 2, 3, 4]);
  const len = payload.length;
  const head = len < 126
    ? Buffer.from([(fin ? 0x80 : 0) | opcode, 0x80 | len])
    : Buffer.from([(fin ? 0x80 : 0) | opcode, 0x80 | 126, len >> 8, len & 255]);
  const body = Buffer.from(payload.map((b, i) => b ^ mask[i & 3]));
  return Buffer.concat([head, mask, body]);
}

function fakeSocket() {
  const written: Buffer[] = [];
  const socket = new Duplex({
    read() {},
    write(chunk, _enc, cb) {
      written.push(chunk);
      cb();
    },
  });
  return { socket, written };
}

Deno.test("websocket stream: fragments, pings and split frames; server frames unmasked", async () => {
  const { socket, written } = fakeSocket();
  const ws = new WebSocketStream(socket);
  const got: Buffer[] = [];
  ws.on("data", (d: Buffer) => got.push(d));
  const frames = Buffer.concat([
    clientFrame(0x2, Buffer.from("ab"), false),
    clientFrame(0x9, Buffer.from("hi")), // ping between fragments is allowed
    clientFrame(0x0, Buffer.from("cd")),
    clientFrame(0x2, Buffer.alloc(300, 7)),
  ]);
  for (let i = 0; i < frames.length; i += 5) socket.push(frames.subarray(i, i + 5));
  await new Promise((r) => setTimeout(r, 0));
  assert.equal(Buffer.concat(got).subarray(0, 4).toString(), "abcd");
  assert.equal(Buffer.concat(got).length, 304);
  assert.deepEqual(written[0], Buffer.from([0x8a, 2, 0x68, 0x69])); // pong "hi"

  ws.write(Buffer.alloc(200, 1));
  await new Promise((r) => setTimeout(r, 0));
  assert.deepEqual(written[1].subarray(0, 4), Buffer.from([0x82, 126, 0, 200]));
  assert.equal(written[1].length, 204);
  assert.deepEqual(
    encodeFrame(0x2, new Uint8Array(70000)).subarray(0, 10),
    Buffer.from([0x82, 127, 0, 0, 0, 0, 0, 1, 0x11, 0x70]),
  );
  ws.destroy();
});

Deno.test("websocket stream: unmasked or text frames close with an error", async () => {
  for (
    const [bytes, want, code] of [
      [Buffer.from([0x82, 0x01, 0x00]), /not masked/, 1002],
      [clientFrame(0x1, Buffer.from("x")), /text message/, 1003],
    ] as const
  ) {
    const { socket, written } = fakeSocket();
    const ws = new WebSocketStream(socket);
    ws.on("error", () => {});
    const closed = new Promise<Error | undefined>((r) =>
      ws.on("close", () => r(ws.errored as Error))
    );
    socket.push(bytes);
    assert.match(String(await closed), want);
    const close = Buffer.concat(written);
    assert.equal(close[0], 0x88);
    assert.equal(close.readUInt16BE(2), code);
    socket.destroy();
  }
});

Deno.test("websocket: accept key per RFC 6455 section 1.3", () => {
  assert.equal(websocketAccept("dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
});
