import assert from "node:assert/strict";
import { Duplex } from "node:stream";
import { WebSocketStream } from "../lib/derp/websocket.ts";

/** A fake socket: what the stream writes is collected, what we push is what it reads. */
class FakeSocket extends Duplex {
  written: Uint8Array[] = [];
  override _read() {}
  override _write(chunk: Uint8Array, _e: BufferEncoding, cb: () => void) {
    this.written.push(new Uint8Array(chunk));
    cb();
  }
  output(): Uint8Array {
    const all = new Uint8Array(this.written.reduce((n, c) => n + c.length, 0));
    let off = 0;
    for (const c of this.written) {
      all.set(c, off);
      off += c.length;
    }
    return all;
  }
}

/** A client frame: FIN set, masked with a fixed key. */
function clientFrame(op: number, payload: Uint8Array, masked = true): Uint8Array {
  const mask = Uint8Array.of(0x11, 0x22, 0x33, 0x44);
  const len = payload.length;
  const head = len < 126
    ? [0x80 | op, (masked ? 0x80 : 0) | len]
    : [0x80 | op, (masked ? 0x80 : 0) | 126, len >> 8, len & 0xff];
  const body = payload.map((b, i) => masked ? b ^ mask[i & 3] : b);
  return Uint8Array.from([...head, ...(masked ? mask : []), ...body]);
}

const tick = () => new Promise((r) => setTimeout(r, 0));

Deno.test("websocket: masked binary frames split at every byte become the byte stream", async () => {
  const sock = new FakeSocket();
  const ws = new WebSocketStream(sock, { role: "server" });
  const got: number[] = [];
  ws.on("data", (c: Uint8Array) => got.push(...c));
  const a = Uint8Array.from({ length: 300 }, (_, i) => i & 0xff);
  const stream = Uint8Array.from([
    ...clientFrame(0x2, a),
    ...clientFrame(0x9, Uint8Array.of(7, 7)), // ping in between
    ...clientFrame(0x2, Uint8Array.of(1, 2, 3)),
  ]);
  for (const b of stream) sock.push(Uint8Array.of(b));
  await tick();
  assert.deepEqual(got, [...a, 1, 2, 3]);
  // The ping was answered with an unmasked pong carrying the same bytes.
  assert.deepEqual([...sock.output()], [0x8a, 0x02, 7, 7]);
  ws.destroy();
});

Deno.test("websocket: writes go out as unmasked binary messages; corked writes as one", async () => {
  const sock = new FakeSocket();
  const ws = new WebSocketStream(sock, { role: "server" });
  ws.write(Uint8Array.of(1, 2, 3));
  await tick();
  assert.deepEqual([...sock.output()], [0x82, 0x03, 1, 2, 3]);
  sock.written = [];
  ws.cork();
  ws.write(Uint8Array.of(4));
  ws.write(new Uint8Array(200).fill(5));
  ws.uncork();
  await tick();
  const out = sock.output();
  assert.deepEqual([...out.subarray(0, 4)], [0x82, 126, 0, 201]);
  assert.equal(out.length, 4 + 201);
  assert.equal(out[4], 4);
  ws.destroy();
});

Deno.test("websocket: protocol violations close the stream with the right code", async () => {
  for (
    const [what, frame, code] of [
      ["unmasked client frame", clientFrame(0x2, Uint8Array.of(1), false), 1002],
      ["text message", clientFrame(0x1, new TextEncoder().encode("hi")), 1003],
      ["reserved bits", Uint8Array.of(0xc2, 0x80, 0, 0, 0, 0), 1002],
      ["frame over 1 MiB", Uint8Array.of(0x82, 0xff, 0, 0, 0, 0, 0, 0x20, 0, 0, 1, 2, 3, 4), 1009],
      ["unknown opcode", clientFrame(0x3, new Uint8Array(0)), 1002],
    ] as const
  ) {
    const sock = new FakeSocket();
    const ws = new WebSocketStream(sock, { role: "server" });
    const closed = new Promise((r) => ws.on("close", r));
    ws.on("error", () => {});
    sock.push(frame);
    await closed;
    const out = sock.output();
    assert.equal(out[0], 0x88, `${what}: close frame`);
    assert.equal((out[2] << 8) | out[3], code, what);
  }
});
