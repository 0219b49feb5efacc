import assert from "node:assert/strict";
import type { Server, Socket } from "node:net";
import { PassThrough } from "node:stream";
import { once } from "node:events";
import { SocketWriter } from "../lib/net/socket_writer.ts";
import { tcpPair } from "./helpers/tcp_pair.ts";

/** A connected pair: `client` is ours to write, `peer` is the server side, paused. */
async function pair(): Promise<{ client: Socket; peer: Socket; server: Server }> {
  const { a: client, b: peer, server } = await tcpPair();
  peer.pause();
  return { client, peer, server };
}

async function close(p: { client: Socket; peer: Socket; server: Server }): Promise<void> {
  p.client.destroy();
  p.peer.destroy();
  await new Promise((r) => p.server.close(r));
}

/** Reads `n` bytes from the (paused) peer. */
async function readAll(peer: Socket, n: number): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  let got = 0;
  peer.on("data", (c: Uint8Array) => {
    chunks.push(c);
    got += c.length;
  });
  peer.resume();
  while (got < n) await new Promise((r) => setTimeout(r, 5));
  return Buffer.concat(chunks).subarray(0, n);
}

Deno.test("socket writer: a TCP socket is written through its handle, in order, byte for byte", async () => {
  const p = await pair();
  try {
    const w = new SocketWriter(p.client);
    assert.equal(w.direct, true, "Deno's TCP socket exposes its handle");
    const expected: number[] = [];
    let taken = 0;
    for (let i = 0; i < 200; i++) {
      const msg = new Uint8Array(100 + i).fill(i);
      if (w.write(msg)) taken++;
      expected.push(...msg);
    }
    assert.equal(taken, 200, "an idle loopback socket takes small writes at once");
    assert.equal(w.bufferedBytes, 0);
    assert.deepEqual([...await readAll(p.peer, expected.length)], expected);
  } finally {
    await close(p);
  }
});

Deno.test("socket writer: what the kernel does not take counts as buffered, keeps its order behind Writable writes, and drains", async () => {
  const p = await pair();
  try {
    const w = new SocketWriter(p.client);
    let drains = 0;
    w.onDrain(() => drains++);
    const big = 64 << 10;
    const sent: Uint8Array[] = [];
    // Fill the kernel's buffers until a write has to wait in the handle.
    for (let i = 0; w.bufferedBytes === 0; i++) {
      assert.ok(i < 2_000, "the kernel never pushed back");
      const msg = new Uint8Array(big).fill(i & 0xff);
      w.write(msg);
      sent.push(msg);
    }
    assert.ok(w.bufferedBytes > 0);
    // Later writes, one with a callback, wait their turn.
    const tail = new Uint8Array(1000).fill(0xab);
    let tailDone = false;
    assert.equal(w.write(tail, () => tailDone = true), false);
    sent.push(tail);
    const more = new Uint8Array(10).fill(0xcd);
    assert.equal(w.write(more), false, "held behind the data in progress, not taken at once");
    sent.push(more);
    let ended = false;
    w.end(() => ended = true);
    const all = Buffer.concat(sent);
    const peerEnded = once(p.peer, "end");
    const got = await readAll(p.peer, all.length);
    assert.ok(Buffer.from(got).equals(all), "bytes arrive in the order written");
    while (w.bufferedBytes > 0 || !ended) await new Promise((r) => setTimeout(r, 5));
    assert.ok(tailDone, "a write's callback runs once its bytes are out");
    assert.ok(drains >= 1, "drain listeners ran once the handle's queue emptied");
    await peerEnded; // the end came after every byte
  } finally {
    await close(p);
  }
});

Deno.test("socket writer: bytes written to the socket before it took over go first", async () => {
  const p = await pair();
  try {
    // More than the kernel takes at once, so the Writable still holds some.
    const chunks: Uint8Array[] = [];
    while (p.client.writableLength === 0) {
      const c = new Uint8Array(1 << 20).fill(chunks.length + 1);
      p.client.write(c);
      chunks.push(c);
    }
    const before = Buffer.concat(chunks);
    const w = new SocketWriter(p.client);
    assert.ok(w.bufferedBytes > 0);
    const after = new Uint8Array(100).fill(2);
    assert.equal(w.write(after), false, "through the Writable while it holds bytes");
    const got = await readAll(p.peer, before.length + after.length);
    assert.ok(Buffer.from(got).equals(Buffer.concat([before, after])));
    while (w.bufferedBytes > 0) await new Promise((r) => setTimeout(r, 5));
    assert.equal(w.write(after), true, "then straight to the handle");
  } finally {
    await close(p);
  }
});

Deno.test("socket writer: a stream without a handle is written through its Writable", () => {
  const s = new PassThrough();
  const w = new SocketWriter(s);
  assert.equal(w.direct, false);
  assert.equal(w.write(new Uint8Array([1, 2, 3])), false, "its memory may still be held");
  assert.deepEqual([...s.read() as Uint8Array], [1, 2, 3]);
});

Deno.test("socket writer: a socket the peer reset ends with an error, not silently", async () => {
  const p = await pair();
  const w = new SocketWriter(p.client);
  const errors: (Error & { code?: string })[] = [];
  p.client.on("error", (e) => errors.push(e));
  const closed = new Promise((r) => p.client.on("close", r));
  p.peer.resetAndDestroy();
  await new Promise((r) => setTimeout(r, 50));
  for (let i = 0; i < 10 && !p.client.destroyed; i++) {
    w.write(new Uint8Array(1000));
    await new Promise((r) => setTimeout(r, 10));
  }
  await closed;
  assert.ok(errors.length > 0, "the socket got an error");
  assert.match(String(errors[0].code ?? errors[0].message), /EPIPE|ECONNRESET/);
  await new Promise((r) => p.server.close(r));
});

Deno.test("socket writer: writes waiting behind one in progress fail, with their callbacks told, when the socket is destroyed", async () => {
  const p = await pair();
  try {
    const w = new SocketWriter(p.client);
    for (let i = 0; w.bufferedBytes === 0; i++) {
      assert.ok(i < 2_000, "the kernel never pushed back");
      w.write(new Uint8Array(64 << 10));
    }
    const result = new Promise<Error | null | undefined>((resolve) =>
      w.write(new Uint8Array(10), resolve)
    );
    p.client.on("error", () => {});
    p.client.destroy(new Error("gone"));
    const e = await result;
    assert.ok(e instanceof Error, "the waiting write's callback got an error");
  } finally {
    await close(p);
  }
});
