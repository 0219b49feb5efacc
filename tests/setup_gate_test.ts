import assert from "node:assert/strict";
import { PassThrough } from "node:stream";
import { createServer as createHttpServer } from "node:http";
import { once } from "node:events";
import { noiseClientConnect } from "../lib/noise/client.ts";
import type { NoiseConn } from "../lib/noise/conn.ts";
import { ts2021UpgradeHandler } from "../lib/noise/upgrade.ts";
import { generateKeyPair } from "../lib/tailcfg/keys.ts";
import { type SetupDone, SetupGate } from "../lib/control/setup_gate.ts";
import { randomKey, startTestControl } from "./helpers/control.ts";

/** Waits for `ok`, as long as a slow machine needs; fails saying what never came. */
async function until(ok: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (!ok()) {
    assert.ok(Date.now() < deadline, `timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

function socket(): PassThrough {
  return new PassThrough();
}

Deno.test("setup gate: at most `limit` at once, the rest in arrival order as slots free", () => {
  const gate = new SetupGate({ limit: 2, maxHoldMs: 60_000 });
  const started: number[] = [];
  const dones = new Map<number, SetupDone>();
  for (let i = 0; i < 5; i++) {
    gate.admit(socket(), (done) => {
      started.push(i);
      dones.set(i, done);
    });
  }
  assert.deepEqual(started, [0, 1]);
  assert.equal(gate.active, 2);
  assert.equal(gate.waiting, 3);
  dones.get(1)!();
  dones.get(1)!(); // a second call gives nothing back twice
  assert.deepEqual(started, [0, 1, 2]);
  assert.equal(gate.active, 2);
  dones.get(0)!();
  dones.get(2)!();
  assert.deepEqual(started, [0, 1, 2, 3, 4]);
  dones.get(3)!();
  dones.get(4)!();
  assert.equal(gate.active, 0);
  assert.equal(gate.waiting, 0);
});

Deno.test("setup gate: a closed connection gives its slot back; a closed waiter is skipped", async () => {
  const gate = new SetupGate({ limit: 1, maxHoldMs: 60_000 });
  const started: string[] = [];
  const first = socket();
  const gone = socket();
  gate.admit(first, () => started.push("first"));
  gate.admit(gone, () => started.push("gone"));
  gate.admit(socket(), (done) => {
    started.push("third");
    done();
  });
  gone.destroy();
  await new Promise((r) => setTimeout(r, 0));
  first.destroy(); // its 'close' gives the slot back
  await new Promise((r) => setTimeout(r, 0));
  assert.deepEqual(started, ["first", "third"]);
  assert.equal(gate.active, 0);
  assert.equal(gate.waiting, 0);
});

Deno.test("setup gate: a slot held too long is given back", async () => {
  const gate = new SetupGate({ limit: 1, maxHoldMs: 20 });
  const started: string[] = [];
  gate.admit(socket(), () => started.push("slow"));
  gate.admit(socket(), (done) => {
    started.push("next");
    done();
  });
  assert.deepEqual(started, ["slow"]);
  await new Promise((r) => setTimeout(r, 60));
  assert.deepEqual(started, ["slow", "next"]);
  assert.equal(gate.active, 0);
});

Deno.test("setup gate: a start that throws frees its slot; close drops the waiters", () => {
  const gate = new SetupGate({ limit: 1, maxHoldMs: 60_000 });
  const s = socket();
  gate.admit(s, () => {
    throw new Error("boom");
  });
  assert.ok(s.destroyed);
  assert.equal(gate.active, 0);
  gate.admit(socket(), () => {});
  const waiting = socket();
  gate.admit(waiting, () => assert.fail("must not start after close"));
  gate.close();
  assert.ok(waiting.destroyed);
  assert.equal(gate.waiting, 0);
  const late = socket();
  gate.admit(late, () => assert.fail("must not start after close"));
  assert.ok(late.destroyed);
});

Deno.test("control: a connection's set-up is done once its first full map is out, not before", async () => {
  const t = await startTestControl();
  try {
    const user = await t.user("alice");
    const key = await t.authKey({ user, reusable: true });
    const mkey = randomKey("mkey:");
    const nkey = randomKey("nodekey:");
    let done = 0;
    const client = t.connect(mkey, 130, () => done++);
    const reply = await client.register({
      Version: 130,
      NodeKey: nkey,
      Auth: { AuthKey: key },
      Hostinfo: { Hostname: "a", OS: "linux" },
    });
    assert.equal(reply.status, 200, reply.text);
    assert.equal(done, 0, "a registration alone does not end the set-up");
    const stream = client.map({ Version: 130, NodeKey: nkey, Stream: true, Compress: "zstd" });
    const first = await stream.next();
    assert.ok(first?.Node, "the first message is the full map");
    // The server learns its last piece was taken just after the client has it.
    await until(() => done > 0, "the set-up to be done");
    assert.equal(done, 1);
    // A one-shot request on another connection ends its set-up too.
    let liteDone = 0;
    const lite = t.connect(mkey, 130, () => liteDone++);
    const r = await lite.post("/machine/map", {
      Version: 130,
      NodeKey: nkey,
      OmitPeers: true,
      Stream: false,
    });
    assert.equal(r.status, 200);
    await until(() => liteDone > 0, "the one-shot set-up to be done");
    assert.equal(liteDone, 1);
    stream.close();
  } finally {
    await t.close();
  }
});

Deno.test("setup gate: a waiter that hangs up is dropped at once; bytes it sent stay unread", async () => {
  const gate = new SetupGate({ limit: 1, maxHoldMs: 60_000 });
  let release: SetupDone = () => {};
  gate.admit(socket(), (done) => release = done);
  const quitter = socket();
  const talker = socket();
  const started: string[] = [];
  gate.admit(quitter, () => started.push("quitter"));
  gate.admit(talker, () => started.push("talker"));
  quitter.end(); // the client's FIN while it waits
  talker.write("early bytes");
  await new Promise((r) => setTimeout(r, 10));
  assert.ok(quitter.destroyed, "a hang-up while waiting destroys the socket");
  assert.ok(!talker.destroyed);
  release();
  assert.deepEqual(started, ["talker"]);
  assert.equal(String(talker.read()), "early bytes");
});

Deno.test("setup gate over real sockets: a client that gave up while waiting costs no handshake", async () => {
  const serverKey = generateKeyPair();
  const gate = new SetupGate({ limit: 1, maxHoldMs: 60_000 });
  const conns: NoiseConn[] = [];
  let handshakes = 0;
  const ts2021 = ts2021UpgradeHandler({
    serverPrivateKey: serverKey.privateKey,
    // Read what comes (as the HTTP/2 server would), so a hang-up is noticed.
    onConnection: (conn) => conns.push(conn.resume()),
  });
  const server = createHttpServer();
  server.on("upgrade", (req, sock, head) =>
    gate.admit(sock, (done) => {
      handshakes++;
      ts2021(req, sock, head, done);
    }));
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const port = (server.address() as { port: number }).port;
  const dial = (signal?: AbortSignal) =>
    noiseClientConnect({
      host: "127.0.0.1",
      port,
      serverPublicKey: serverKey.publicKey,
      machinePrivateKey: generateKeyPair().privateKey,
      capVersion: 130,
      signal,
    });
  try {
    const first = await dial();
    assert.equal(handshakes, 1);
    // The second client gives up while it waits behind the first, as its dial timeout would
    // (aborted once it is seen waiting: a fixed timeout could fire before its request is out).
    const giveUp = new AbortController();
    const second = dial(giveUp.signal);
    await until(() => gate.waiting === 1, "the second client to wait");
    giveUp.abort();
    await assert.rejects(second);
    const third = dial();
    await until(() => gate.waiting === 2, "the third client to wait");
    first.conn.destroy(); // the first connection closes: its slot is free
    const { conn } = await third;
    assert.equal(handshakes, 2, "the client that gave up got no handshake");
    assert.equal(conns.length, 2);
    conn.destroy();
  } finally {
    for (const c of conns) c.destroy();
    server.close();
  }
});
