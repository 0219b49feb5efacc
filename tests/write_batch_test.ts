import assert from "node:assert/strict";
import { once } from "node:events";
import type { Duplex } from "node:stream";
import { type DeferredWriter, WriteBatch } from "../lib/net/write_batch.ts";
import { NoiseConn } from "../lib/noise/conn.ts";
import { RecordOpener, RecordSealer } from "../lib/noise/records.ts";
import { ChaChaSealEngine } from "../lib/noise/chacha_wasm.ts";
import { tcpPair } from "./helpers/tcp_pair.ts";
import { handshakeKeys } from "./helpers/noise_keys.ts";

/** A writer that notes what it is asked to write. */
function recorder(name: string, log: string[]): DeferredWriter {
  return {
    writeDeferred(data) {
      log.push(data === null ? `${name}:end` : `${name}:${new TextDecoder().decode(data)}`);
      return true;
    },
  };
}

const bytes = (s: string) => new TextEncoder().encode(s);

Deno.test("write batch: writes wait for the end of run, then go in the order they came", () => {
  const batch = new WriteBatch();
  const log: string[] = [];
  const a = recorder("a", log);
  const b = recorder("b", log);
  const result = batch.run(() => {
    batch.defer(a, bytes("1"));
    batch.defer(b, bytes("2"));
    // A nested run does not write at its end: the outer one does.
    batch.run(() => batch.defer(a, bytes("3")));
    batch.defer(b, null);
    assert.deepEqual(log, [], "nothing written inside run");
    assert.ok(batch.open);
    return 42;
  });
  assert.equal(result, 42);
  assert.equal(batch.open, false);
  assert.deepEqual(log, ["a:1", "b:2", "a:3", "b:end"]);
});

Deno.test("write batch: past its byte limit it writes before run returns", () => {
  const batch = new WriteBatch(10);
  const log: string[] = [];
  const a = recorder("a", log);
  batch.run(() => {
    batch.defer(a, bytes("12345"));
    assert.deepEqual(log, []);
    batch.defer(a, bytes("67890"));
    assert.deepEqual(log, ["a:12345", "a:67890"], "10 bytes waited: written at once");
    batch.defer(a, bytes("x"));
    assert.equal(log.length, 2);
  });
  assert.deepEqual(log, ["a:12345", "a:67890", "a:x"]);
});

Deno.test("write batch: a writer that throws does not lose the others' writes", () => {
  const batch = new WriteBatch();
  const log: string[] = [];
  const broken: DeferredWriter = {
    writeDeferred() {
      throw new Error("broken writer");
    },
  };
  assert.throws(
    () =>
      batch.run(() => {
        batch.defer(broken, bytes("1"));
        batch.defer(recorder("b", log), bytes("2"));
      }),
    /broken writer/,
  );
  assert.deepEqual(log, ["b:2"]);
  // The batch is usable again.
  batch.run(() => batch.defer(recorder("c", log), bytes("3")));
  assert.deepEqual(log, ["b:2", "c:3"]);
});

Deno.test("write batch: its memory is reused only when every write left it", () => {
  const batch = new WriteBatch();
  let held = false;
  const writer: DeferredWriter = { writeDeferred: () => !held };
  const first = batch.take(100)!;
  const second = batch.take(50)!;
  assert.equal(second.buffer, first.buffer);
  assert.equal(second.byteOffset, 100, "one after the other");
  batch.run(() => {
    batch.defer(writer, first);
    batch.defer(writer, second);
  });
  // Taken whole: the next record starts the same memory again.
  const third = batch.take(10)!;
  assert.equal(third.buffer, first.buffer);
  assert.equal(third.byteOffset, 0);
  held = true;
  batch.run(() => batch.defer(writer, third));
  // A socket still holds `third`: new memory, the old one is left to that write.
  const fourth = batch.take(10)!;
  assert.notEqual(fourth.buffer, third.buffer);
  // A held write of memory of its own does not keep the arena from being reused.
  batch.run(() => {
    batch.defer(writer, fourth);
    batch.defer(writer, new Uint8Array(10));
  });
  held = false;
  assert.notEqual(batch.take(10)!.buffer, fourth.buffer, "fourth is held");
  const fifth = batch.take(10)!;
  batch.run(() => {
    held = false;
    batch.defer(writer, fifth);
  });
  held = true;
  batch.run(() => batch.defer(writer, new Uint8Array(10)));
  const sixth = batch.take(10)!;
  assert.equal(sixth.buffer, fifth.buffer);
  assert.equal(sixth.byteOffset, 0);
  assert.equal(batch.take(1 << 30), null, "no room: the caller uses its own");
});

function serverConn(socket: Duplex, batch: WriteBatch, engine: ChaChaSealEngine) {
  const { srv, cli } = handshakeKeys();
  const conn = new NoiseConn({
    socket,
    sealer: new RecordSealer(srv.sendKey, engine),
    opener: new RecordOpener(srv.receiveKey, engine),
    peerPublicKey: srv.peerPublicKey,
    protocolVersion: srv.version,
    handshakeHash: srv.handshakeHash,
    writeBatch: batch,
  });
  return { conn, cli };
}

/** The client's side of a NoiseConn: reads and opens its records. */
function clientOf(
  socket: Duplex,
  cli: ReturnType<typeof handshakeKeys>["cli"],
) {
  return new NoiseConn({
    socket,
    sealer: new RecordSealer(cli.sendKey),
    opener: new RecordOpener(cli.receiveKey),
    peerPublicKey: cli.peerPublicKey,
    protocolVersion: cli.version,
    handshakeHash: cli.handshakeHash,
  });
}

function readAll(stream: Duplex): Promise<string> {
  return new Promise((resolve, reject) => {
    let text = "";
    stream.on("data", (d: Buffer) => text += d.toString());
    stream.once("end", () => resolve(text));
    stream.once("error", reject);
  });
}

Deno.test("write batch: a NoiseConn seals in a batch, writes after it, and keeps its order", async () => {
  const batch = new WriteBatch();
  const engine = new ChaChaSealEngine();
  const one = await tcpPair();
  const two = await tcpPair();
  const first = serverConn(one.b, batch, engine);
  const second = serverConn(two.b, batch, engine);
  first.conn.attachDirect(() => {});
  second.conn.attachDirect(() => {});
  const firstClient = clientOf(one.a, first.cli);
  const secondClient = clientOf(two.a, second.cli);
  const gotFirst = readAll(firstClient);
  const gotSecond = readAll(secondClient);

  const later = bytes("[late]");
  // Written when the batch is: after the first conn's earlier writes, never before them.
  const lateWriter: DeferredWriter = {
    writeDeferred() {
      first.conn.writePlain([later], later.length);
      return true;
    },
  };
  batch.run(() => {
    first.conn.writePlain([bytes("a1"), bytes("-")], 3);
    second.conn.writePlain([bytes("b1")], 2);
    batch.defer(lateWriter, null);
    first.conn.writePlain([bytes("a2")], 2);
    // Two records (3-byte header, 16-byte tag each) of 3 and 2 bytes, sealed and counted.
    assert.equal(first.conn.socketBufferedBytes, (3 + 3 + 16) + (3 + 2 + 16));
    second.conn.writePlain([bytes("b2")], 2);
    // Ended after what it deferred.
    second.conn.endSocket();
  });
  first.conn.endSocket();
  assert.equal(await gotFirst, "a1-a2[late]");
  assert.equal(await gotSecond, "b1b2");
  await Promise.all([once(first.conn, "close"), once(second.conn, "close")]);
  one.close();
  two.close();
});

Deno.test("write batch: writes of a conn destroyed before the batch ends are dropped", async () => {
  const batch = new WriteBatch();
  const engine = new ChaChaSealEngine();
  const pair = await tcpPair();
  const { conn, cli } = serverConn(pair.b, batch, engine);
  conn.attachDirect(() => {});
  const client = clientOf(pair.a, cli);
  client.on("error", () => {});
  client.resume();
  const failed: (Error | null | undefined)[] = [];
  batch.run(() => {
    conn.writePlain([bytes("gone")], 4);
    conn.write(bytes("with a callback"), (e) => failed.push(e));
    conn.destroy();
  });
  await once(conn, "close");
  await once(client, "close");
  assert.equal(failed.length, 1);
  assert.ok(failed[0] instanceof Error, "the callback hears the write failed");
  pair.close();
});
