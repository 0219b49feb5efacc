import assert from "node:assert/strict";
import { type SetupDone, SetupGate } from "../lib/control/setup_gate.ts";
import { MapService } from "../lib/control/map_session.ts";
import { HttpError } from "../lib/control/http_util.ts";
import type { H2Response } from "../lib/h2/server.ts";
import { decodeFrames, SharedMessage } from "../lib/mapper/framing.ts";
import { EphemeralGc } from "../lib/state/ephemeral_gc.ts";
import { silentLogger } from "../lib/log/log.ts";
import type { MachineKey } from "../lib/tailcfg/keys.ts";
import { randomKey, startTestControl } from "./helpers/control.ts";

/** Waits for `ok`, as long as a slow machine needs; fails saying what never came. */
async function until(ok: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (!ok()) {
    assert.ok(Date.now() < deadline, `timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** A freed slot goes to the next waiter in a microtask, outside the caller's stack. */
const tick = () => new Promise<void>((r) => queueMicrotask(r));

Deno.test("setup gate: at most `limit` at once, the rest in arrival order as slots free", async () => {
  const gate = new SetupGate({ limit: 2, maxHoldMs: 60_000 });
  const started: number[] = [];
  const dones = new Map<number, SetupDone>();
  for (let i = 0; i < 5; i++) {
    gate.admit((done) => {
      started.push(i);
      dones.set(i, done);
    });
  }
  assert.deepEqual(started, [0, 1]);
  assert.equal(gate.active, 2);
  assert.equal(gate.waiting, 3);
  dones.get(1)!();
  dones.get(1)!(); // a second call gives nothing back twice
  // A newcomer does not jump the queue while the freed slot is being handed on.
  gate.admit(() => started.push(5));
  await tick();
  assert.deepEqual(started, [0, 1, 2]);
  assert.equal(gate.active, 2);
  dones.get(0)!();
  dones.get(2)!();
  await tick();
  assert.deepEqual(started, [0, 1, 2, 3, 4]);
  dones.get(3)!();
  await tick();
  assert.deepEqual(started, [0, 1, 2, 3, 4, 5]);
  dones.get(4)!();
  assert.equal(gate.active, 1);
  assert.equal(gate.waiting, 0);
});

Deno.test("setup gate: a cancelled waiter is skipped; cancelling a running one frees its slot", async () => {
  const gate = new SetupGate({ limit: 1, maxHoldMs: 60_000 });
  const started: string[] = [];
  const first = gate.admit(() => started.push("first"));
  const gone = gate.admit(() => started.push("gone"));
  gate.admit(() => started.push("third"));
  assert.equal(gate.waiting, 2);
  gone.cancel();
  gone.cancel(); // twice is once
  assert.equal(gate.waiting, 1);
  first.cancel(); // the request went away while its answer was being written
  await tick();
  assert.deepEqual(started, ["first", "third"]);
  assert.equal(gate.active, 1);
  assert.equal(gate.waiting, 0);
});

Deno.test("setup gate: a slot held too long is given back", async () => {
  const gate = new SetupGate({ limit: 1, maxHoldMs: 20 });
  const started: string[] = [];
  gate.admit(() => started.push("slow"));
  gate.admit((done) => {
    started.push("next");
    done();
  });
  assert.deepEqual(started, ["slow"]);
  await until(() => started.length === 2, "the held slot to be given back");
  assert.deepEqual(started, ["slow", "next"]);
  assert.equal(gate.active, 0);
});

Deno.test("setup gate: a start that throws frees its slot; close drops the waiters", () => {
  const gate = new SetupGate({ limit: 1, maxHoldMs: 60_000 });
  gate.admit(() => {
    throw new Error("boom");
  });
  assert.equal(gate.active, 0);
  let release: SetupDone = () => {};
  gate.admit((done) => release = done);
  gate.admit(() => assert.fail("must not start after close"));
  gate.close();
  assert.equal(gate.waiting, 0);
  release(); // the running one finishes: the dropped waiter still does not start
  gate.admit(() => assert.fail("must not start after close"));
  assert.equal(gate.active, 0);
});

/** An H2Response that records what is written and hands a write over only when told to. */
class FakeResponse implements H2Response {
  headersSent = false;
  ended = false;
  closed = false;
  status = 0;
  readonly frames: Uint8Array[] = [];
  readonly untaken: (() => void)[] = [];
  #closeListeners: (() => void)[] = [];
  get bufferedBytes(): number {
    return 0;
  }
  /** Written and not taken yet. */
  queuedBytes = 0;
  writeHead(status: number): void {
    if (this.headersSent) return;
    this.headersSent = true;
    this.status = status;
  }
  write(data: Uint8Array, onTaken?: () => void): void {
    if (this.closed || this.ended) return;
    this.writeHead(200);
    this.frames.push(data);
    this.queuedBytes += data.length;
    if (onTaken) this.untaken.push(onTaken);
  }
  end(): void {
    this.writeHead(200);
    this.ended = true;
  }
  destroy(): void {
    this.close();
  }
  onClose(listener: () => void): void {
    this.#closeListeners.push(listener);
  }
  /** The client went away. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const l of this.#closeListeners.splice(0)) l();
  }
  /** The transport takes everything written so far. */
  take(): void {
    this.queuedBytes = 0;
    for (const cb of this.untaken.splice(0)) cb();
  }
  messages(): Record<string, unknown>[] {
    return this.frames.flatMap((f) => decodeFrames(f, false).messages.map((m) => JSON.parse(m)));
  }
}

Deno.test("map gate: a full map waits for its turn with its headers out and keep-alives; a lite update never waits", async () => {
  const t = await startTestControl();
  const ephemeral = new EphemeralGc({ state: t.state, timeoutMs: 60_000, log: silentLogger() });
  const gate = new SetupGate({ limit: 1, maxHoldMs: 60_000 });
  const maps = new MapService({
    state: t.state,
    mapper: t.mapper,
    notifier: t.notifier,
    ephemeral,
    log: silentLogger(),
    keepAliveMs: 20,
    keepAliveJitterMs: 1,
    gate,
  });
  try {
    const user = await t.user("alice");
    const key = await t.authKey({ user, reusable: true });
    const nodes: { mkey: MachineKey; nkey: string }[] = [];
    for (let i = 0; i < 3; i++) {
      const mkey = randomKey("mkey:");
      const nkey = randomKey("nodekey:");
      const reply = await t.connect(mkey).register({
        Version: 130,
        NodeKey: nkey as `nodekey:${string}`,
        Auth: { AuthKey: key },
        Hostinfo: { Hostname: `n${i}`, OS: "linux" },
      });
      assert.equal(reply.status, 200, reply.text);
      nodes.push({ mkey, nkey });
    }
    const stream = (i: number, res: FakeResponse) =>
      maps.handle(
        { Version: 130, NodeKey: nodes[i].nkey, Stream: true } as never,
        nodes[i].mkey,
        res,
      );

    const a = new FakeResponse();
    stream(0, a);
    assert.equal(a.messages().length, 1);
    assert.ok(a.messages()[0].Node, "a free slot: the full map at once");
    assert.equal(gate.active, 1, "held until the transport has taken the full map");

    const b = new FakeResponse();
    const c = new FakeResponse();
    stream(1, b);
    stream(2, c);
    assert.equal(gate.waiting, 2);
    assert.ok(b.headersSent && b.status === 200, "a waiting request has its headers at once");
    // Waiting clients hear keep-alives (Tailscale gives up after 120 s of silence).
    await until(() => b.messages().length >= 2, "keep-alives while waiting");
    assert.ok(b.messages().every((m) => m.KeepAlive === true && !m.Node));
    assert.ok(!t.notifier.hasSession(t.state.nodeByNodeKey(nodes[1].nkey as never)!.id));

    // A lite update from a waiting node is answered at once.
    const lite = new FakeResponse();
    maps.handle(
      { Version: 130, NodeKey: nodes[1].nkey, Stream: false, OmitPeers: true } as never,
      nodes[1].mkey,
      lite,
    );
    assert.ok(lite.ended && lite.status === 200);

    // An unknown node is refused before any waiting.
    assert.throws(
      () =>
        maps.handle(
          { Version: 130, NodeKey: randomKey("nodekey:"), Stream: true } as never,
          nodes[0].mkey,
          new FakeResponse(),
        ),
      (e) => e instanceof HttpError && e.status === 404,
    );

    c.close(); // gives up while waiting: skipped, no full map built for it
    assert.equal(gate.waiting, 1);
    a.take();
    await until(() => gate.waiting === 0, "the next turn");
    const full = b.messages().filter((m) => m.Node);
    assert.equal(full.length, 1, "its turn: the full map");
    assert.equal((full[0].Peers as unknown[]).length, 2);
    assert.equal(c.messages().filter((m) => m.Node).length, 0);
    b.take();
    assert.equal(gate.active, 0);
    for (const r of [a, b]) r.close();
  } finally {
    gate.close();
    ephemeral.close();
    await t.close();
  }
});

Deno.test("map stream: a client that reads nothing is closed once its queue passes maxBufferedBytes", async () => {
  const t = await startTestControl();
  const ephemeral = new EphemeralGc({ state: t.state, timeoutMs: 60_000, log: silentLogger() });
  const maps = new MapService({
    state: t.state,
    mapper: t.mapper,
    notifier: t.notifier,
    ephemeral,
    log: silentLogger(),
    maxBufferedBytes: 4096,
  });
  try {
    const key = await t.authKey({ user: await t.user("alice"), reusable: true });
    const mkey = randomKey("mkey:");
    const nkey = randomKey("nodekey:");
    const reply = await t.connect(mkey).register({
      Version: 130,
      NodeKey: nkey,
      Auth: { AuthKey: key },
      Hostinfo: { Hostname: "slow", OS: "linux" },
    });
    assert.equal(reply.status, 200, reply.text);
    const res = new FakeResponse();
    maps.handle({ Version: 130, NodeKey: nkey, Stream: true } as never, mkey, res);
    const id = t.state.nodeByNodeKey(nkey)!.id;
    const big = new SharedMessage(JSON.stringify({ Domain: "x".repeat(3000) }));
    assert.ok(t.notifier.sendTo(id, big)); // checked before queueing: the queue was small
    assert.ok(!res.closed);
    // The queue is now past 4 KB (nothing taken): a further message closes the stream.
    t.notifier.sendTo(id, big);
    assert.ok(res.closed, "closed: the client reconnects and gets a fresh full map");
  } finally {
    ephemeral.close();
    await t.close();
  }
});
