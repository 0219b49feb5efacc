import assert from "node:assert/strict";
import { Duplex } from "node:stream";
import { NoiseConn } from "../lib/noise/conn.ts";
import { HEADER_LEN } from "../lib/noise/messages.ts";
import { RecordOpener, RecordSealer } from "../lib/noise/records.ts";
import { WriteBatch } from "../lib/noise/write_batch.ts";

/** A socket that records, in order, what was written to it and when it was ended. */
function recordingSocket() {
  const events: (Buffer | "end")[] = [];
  const socket = new Duplex({
    read() {},
    write(chunk, _enc, cb) {
      events.push(chunk);
      cb();
    },
    final(cb) {
      events.push("end");
      cb();
    },
  });
  return { socket, events };
}

/** A direct-mode conn on a recording socket, and a way to read back what it sent. */
function conn(batch: WriteBatch) {
  const key = crypto.getRandomValues(new Uint8Array(32));
  const { socket, events } = recordingSocket();
  const c = new NoiseConn({
    socket,
    sealer: new RecordSealer(key),
    opener: new RecordOpener(crypto.getRandomValues(new Uint8Array(32))),
    peerPublicKey: new Uint8Array(32),
    protocolVersion: 1,
    handshakeHash: new Uint8Array(32),
    writeBatch: batch,
  });
  c.attachDirect(() => {});
  /** The plaintexts the socket got, in order ("end" where it was ended). */
  const sent = () => {
    const opener = new RecordOpener(key);
    return events.map((e) => {
      if (e === "end") return e;
      const out: string[] = [];
      for (let off = 0; off < e.length;) {
        const len = e.readUInt16BE(off + 1);
        out.push(opener.open(e.subarray(off + HEADER_LEN, off + HEADER_LEN + len)).toString());
        off += HEADER_LEN + len;
      }
      return out.join("");
    });
  };
  const write = (text: string) => c.writePlain([Buffer.from(text)], text.length);
  return { c, events, sent, write };
}

const settle = () => new Promise((r) => setTimeout(r, 0));

Deno.test("write batch: held writes go out when the fan-out ends, each conn's in its order", async () => {
  const batch = new WriteBatch();
  const a = conn(batch);
  const b = conn(batch);
  a.write("before ");
  batch.run(() => {
    a.write("a1");
    b.write("b1");
    a.write("a2");
    assert.equal(batch.heldCount, 3);
    assert.equal(a.events.length, 1, "nothing of the fan-out written yet");
    assert.equal(b.events.length, 0);
  });
  assert.equal(batch.heldCount, 0);
  await settle();
  assert.deepEqual(a.sent(), ["before ", "a1", "a2"]);
  assert.deepEqual(b.sent(), ["b1"]);
  // Outside a fan-out, writes go at once.
  b.write("b2");
  await settle();
  assert.deepEqual(b.sent(), ["b1", "b2"]);
});

Deno.test("write batch: past its byte limit it writes what it holds at once", async () => {
  const batch = new WriteBatch(1_000);
  const a = conn(batch);
  batch.run(() => {
    a.write("x".repeat(600));
    assert.equal(batch.heldCount, 1);
    a.write("y".repeat(600));
    assert.equal(batch.heldCount, 0, "1,200 bytes held: written");
    a.write("z");
    assert.equal(batch.heldCount, 1);
  });
  await settle();
  assert.deepEqual(a.sent(), ["x".repeat(600), "y".repeat(600), "z"]);
});

Deno.test("write batch: a conn ended in a fan-out sends what was held first; a destroyed one drops it", async () => {
  const batch = new WriteBatch();
  const a = conn(batch);
  const b = conn(batch);
  const c = conn(batch);
  batch.run(() => {
    a.write("last words");
    a.c.endSocket();
    b.write("lost");
    b.c.destroy();
    c.write("still sent");
  });
  await settle();
  assert.deepEqual(a.sent(), ["last words", "end"]);
  assert.deepEqual(b.sent(), []);
  assert.deepEqual(c.sent(), ["still sent"]);
});

Deno.test("write batch: a fan-out that throws still writes what it held", async () => {
  const batch = new WriteBatch();
  const a = conn(batch);
  assert.throws(() =>
    batch.run(() => {
      a.write("sent anyway");
      throw new Error("boom");
    }), /boom/);
  await settle();
  assert.deepEqual(a.sent(), ["sent anyway"]);
  assert.equal(batch.active, false);
});
