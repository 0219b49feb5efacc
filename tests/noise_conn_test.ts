import assert from "node:assert/strict";
import { Duplex } from "node:stream";
import { once } from "node:events";
import { NoiseConn, NoiseProtocolError } from "../lib/noise/conn.ts";
import type { HandshakeResult } from "../lib/noise/handshake.ts";
import { encodeErrorFrame, MAX_PLAINTEXT_LEN } from "../lib/noise/messages.ts";
import { NoiseRecordError, RecordOpener, RecordSealer } from "../lib/noise/records.ts";
import { ChaChaSealEngine } from "../lib/noise/chacha_wasm.ts";
import { tcpPair } from "./helpers/tcp_pair.ts";
import { handshakeKeys } from "./helpers/noise_keys.ts";

const keys = handshakeKeys;

function connOver(
  socket: Duplex,
  hs: HandshakeResult,
  head?: Uint8Array,
  engine?: ChaChaSealEngine,
): NoiseConn {
  return new NoiseConn({
    socket,
    sealer: new RecordSealer(hs.sendKey, engine),
    opener: new RecordOpener(hs.receiveKey, engine),
    peerPublicKey: hs.peerPublicKey,
    protocolVersion: hs.version,
    handshakeHash: hs.handshakeHash,
    head,
  });
}

/** A fake socket: what the test pushes is what the conn reads; what the conn writes is kept. */
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

function collect(stream: Duplex, n: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let got = 0;
    const onData = (d: Buffer) => {
      chunks.push(d);
      got += d.length;
      if (got >= n) {
        stream.off("data", onData);
        resolve(Buffer.concat(chunks));
      }
    };
    stream.on("data", onData);
    stream.once("error", reject);
  });
}

const pattern = (n: number, seed: number) =>
  Buffer.from(Uint8Array.from({ length: n }, (_, i) => (i * seed + (i >> 8)) & 255));

Deno.test("conn: plaintext both ways over TCP, large writes split into several records", async () => {
  const { srv, cli, machine } = keys();
  const { a, b, close } = await tcpPair();
  const client = connOver(a, cli);
  const server = connOver(b, srv);
  assert.deepEqual(server.peerPublicKey, machine.publicKey);
  assert.equal(server.protocolVersion, 145);

  const up = Buffer.concat([pattern(10, 3), pattern(10_000, 7), pattern(4077, 5)]);
  const down = pattern(9000, 11);
  const gotUp = collect(server, up.length);
  const gotDown = collect(client, down.length);
  client.write(up.subarray(0, 10));
  client.write(up.subarray(10, 10_010));
  client.write(up.subarray(10_010));
  server.write(down);
  assert.ok((await gotUp).equals(up));
  assert.ok((await gotDown).equals(down));
  // 10 B → 1, 10 000 B → 3, 4077 B → 1 (unless writes got batched into fewer, bigger records).
  assert.ok(client.recordCounts.sent >= 3, `sent ${client.recordCounts.sent}`);
  assert.equal(server.recordCounts.received, client.recordCounts.sent);
  assert.equal(server.recordCounts.sent, Math.ceil(9000 / MAX_PLAINTEXT_LEN));

  client.end();
  await once(server, "close");
  await once(client, "close");
  assert.equal(server.closeError, undefined);
  close();
});

Deno.test("conn: corked small writes are packed into one record", async () => {
  const { srv, cli } = keys();
  const { socket, written } = fakeSocket();
  const client = connOver(socket, cli);
  client.cork();
  for (let i = 0; i < 50; i++) client.write(pattern(20, i));
  client.uncork();
  await new Promise((r) => setTimeout(r, 0));
  assert.equal(client.recordCounts.sent, 1);

  const peer = fakeSocket();
  const server = connOver(peer.socket, srv);
  const got = collect(server, 1000);
  peer.socket.push(Buffer.concat(written));
  const all = await got;
  assert.ok(all.equals(Buffer.concat(Array.from({ length: 50 }, (_, i) => pattern(20, i)))));
  client.destroy();
  server.destroy();
});

Deno.test("conn: frames split at any byte boundary and the handshake head are reassembled", async () => {
  const { srv, cli } = keys();
  const sealer = new RecordSealer(cli.sendKey);
  const plain = pattern(6000, 13);
  const frames = Buffer.concat([
    sealer.seal(plain.subarray(0, 100)),
    sealer.seal(new Uint8Array(0)), // empty records are legal
    sealer.seal(plain.subarray(100)),
  ]);
  const { socket } = fakeSocket();
  const server = connOver(socket, srv, frames.subarray(0, 50));
  const got = collect(server, plain.length);
  for (let i = 50; i < frames.length; i += 7) socket.push(frames.subarray(i, i + 7));
  assert.ok((await got).equals(plain));
  assert.equal(server.recordCounts.received, 4);
  server.destroy();
});

/** Resolves on 'close' (events.once would reject on the 'error' that comes first). */
const closed = (s: Duplex) => new Promise<void>((r) => s.once("close", () => r()));

async function expectClosedWith(conn: NoiseConn, socket: Duplex, pattern: RegExp, type: unknown) {
  await closed(conn);
  assert.ok(conn.closeError instanceof (type as typeof Error), String(conn.closeError));
  assert.match(conn.closeError!.message, pattern);
  assert.ok(socket.destroyed, "the socket under the conn is destroyed too");
}

for (
  const [how, engine] of [["node:crypto", undefined], [
    "WebAssembly",
    new ChaChaSealEngine(),
  ]] as const
) {
  Deno.test(`conn (${how} opening): a tampered record closes the connection after the good ones`, async () => {
    const { srv, cli } = keys();
    const sealer = new RecordSealer(cli.sendKey);
    const { socket } = fakeSocket();
    const server = connOver(socket, srv, undefined, engine);
    const good = collect(server, 5);
    socket.push(sealer.seal(Buffer.from("hello")));
    assert.equal((await good).toString(), "hello");
    const bad = sealer.seal(Buffer.from("world"));
    bad[5] ^= 1;
    socket.push(bad);
    await expectClosedWith(server, socket, /failed to decrypt/, NoiseRecordError);
  });

  Deno.test(`conn (${how} opening): a replayed record fails (the counter moved on)`, async () => {
    const { srv, cli } = keys();
    const sealer = new RecordSealer(cli.sendKey);
    const { socket } = fakeSocket();
    const server = connOver(socket, srv, undefined, engine);
    const first = sealer.seal(Buffer.from("once"));
    const got = collect(server, 4);
    socket.push(first);
    await got;
    socket.push(first);
    await expectClosedWith(server, socket, /failed to decrypt/, NoiseRecordError);
  });
}

Deno.test("conn: an oversized frame is refused from its header alone", async () => {
  const { srv } = keys();
  const { socket } = fakeSocket();
  const server = connOver(socket, srv);
  socket.push(Buffer.from([0x04, 0x0f, 0xfe])); // 4094-byte ciphertext: frame of 4097
  await expectClosedWith(server, socket, /4097 bytes exceeds the 4096-byte/, NoiseProtocolError);
});

Deno.test("conn: a frame of the wrong type closes the connection", async () => {
  const { srv } = keys();
  const { socket } = fakeSocket();
  const server = connOver(socket, srv);
  socket.push(Buffer.from([0x02, 0x00, 0x30]));
  await expectClosedWith(server, socket, /unexpected type 2/, NoiseProtocolError);
});

Deno.test("conn: an error frame from the peer is reported with its text", async () => {
  const { cli } = keys();
  const { socket } = fakeSocket();
  const client = connOver(socket, cli);
  socket.push(encodeErrorFrame("go away"));
  await expectClosedWith(client, socket, /error frame: "go away"/, NoiseProtocolError);
});

Deno.test("conn: a record shorter than its tag is refused", async () => {
  const { srv } = keys();
  const { socket } = fakeSocket();
  const server = connOver(socket, srv);
  socket.push(Buffer.from([0x04, 0x00, 0x05, 1, 2, 3, 4, 5]));
  await expectClosedWith(server, socket, /shorter than its tag/, NoiseRecordError);
});

Deno.test("conn: the stream ending inside a frame is an error, at a boundary it is a clean end", async () => {
  const { srv, cli } = keys();
  const sealer = new RecordSealer(cli.sendKey);
  const cut = fakeSocket();
  const a = connOver(cut.socket, srv);
  a.resume();
  cut.socket.push(sealer.seal(Buffer.from("partial")).subarray(0, 10));
  cut.socket.push(null);
  await expectClosedWith(a, cut.socket, /middle of a frame/, NoiseProtocolError);

  const { srv: srv2, cli: cli2 } = keys();
  const clean = fakeSocket();
  const b = connOver(clean.socket, srv2);
  const got = collect(b, 4);
  const ended = once(b, "end");
  clean.socket.push(new RecordSealer(cli2.sendKey).seal(Buffer.from("done")));
  clean.socket.push(null);
  assert.equal((await got).toString(), "done");
  await ended;
  assert.equal(b.closeError, undefined);
  b.destroy();
});

Deno.test("conn: an error with no listener of the caller does not crash the process", async () => {
  const { srv } = keys();
  const { socket } = fakeSocket();
  const server = connOver(socket, srv);
  socket.push(Buffer.from([0x09, 0x00, 0x00]));
  await closed(server);
  assert.ok(server.closeError instanceof NoiseProtocolError);
});

Deno.test("conn: direct mode reads a socket that was paused before the handshake", async () => {
  const { srv, cli } = keys();
  const { a, b, close } = await tcpPair();
  // A socket paused before the conn takes it (bytes waiting unread): direct mode must resume it.
  b.pause();
  const client = connOver(a, cli);
  const server = connOver(b, srv);
  const got: Buffer[] = [];
  const arrived = new Promise<void>((resolve) =>
    server.attachDirect((plain) => {
      got.push(plain);
      if (Buffer.concat(got).length >= 5000) resolve();
    })
  );
  const up = pattern(5000, 13);
  client.write(up);
  let timer: ReturnType<typeof setTimeout> | undefined;
  const stalled = new Promise<void>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error("nothing arrived: the socket stayed paused")),
      10_000,
    );
  });
  await Promise.race([arrived, stalled]).finally(() => clearTimeout(timer));
  assert.ok(Buffer.concat(got).equals(up));
  // And the way back: sealed in the caller's turn.
  const down = pattern(300, 17);
  const gotDown = collect(client, down.length);
  server.writePlain([down.subarray(0, 9), down.subarray(9)], down.length);
  assert.ok((await gotDown).equals(down));
  client.end();
  await once(server, "close");
  close();
});

Deno.test("conn: big direct writes to a reader that is not reading keep their bytes (output memory is reused)", async () => {
  // The server's sealing reuses output memory the socket took whole; memory a socket still
  // holds (a reader that does not keep up) must never be written again.
  const { srv, cli } = keys();
  const { a, b, close } = await tcpPair();
  const engine = new ChaChaSealEngine();
  const client = connOver(a, cli);
  const server = connOver(b, srv, undefined, engine);
  server.attachDirect(() => {});
  a.pause(); // the client reads nothing until every write is queued
  const writes = Array.from({ length: 60 }, (_, i) => pattern(200_000 - 100 * i, 3 + 2 * i));
  const want = Buffer.concat(writes);
  for (const w of writes) server.writePlain([w], w.length);
  assert.ok(server.socketBufferedBytes > 0, "some writes wait in the socket's queue");
  const got = collect(client, want.length);
  a.resume();
  assert.ok((await got).equals(want));
  client.end();
  await once(server, "close");
  close();
});
