/**
 * The server's notifier (adaptive window): a lone change at idle goes out at once, not after
 * the batching window; changes made together still go out together.
 */
import assert from "node:assert/strict";
import { parseConfigText } from "../lib/config/load.ts";
import { silentLogger } from "../lib/log/log.ts";
import { Mapper } from "../lib/mapper/mapper.ts";
import { CPU_BUDGET, flushPause, Notifier, type NotifierDeps } from "../lib/mapper/notifier.ts";
import { TEST_DERP_MAP } from "./helpers/control.ts";
import { RecordingSink } from "./helpers/map_fixtures.ts";
import { openMemoryState, registerTestNode } from "./helpers/memory_state.ts";

async function until(what: string, done: () => boolean): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (!done()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** A memory state with `n` nodes, each with a recording session, behind an adaptive notifier. */
async function world(
  n: number,
  opts: Pick<NotifierDeps, "batchDelayMs" | "cpuMicros" | "sessionsPerWindow">,
) {
  const { config } = parseConfigText("", { env: {} });
  const { store, state } = await openMemoryState({ config });
  const user = await state.createUser({ name: "alice" });
  const ids: number[] = [];
  for (let i = 0; i < n; i++) ids.push((await registerTestNode(state, user.id, `n${i}`)).id);
  const mapper = new Mapper({ state, config, derpMap: () => TEST_DERP_MAP });
  const notifier = new Notifier({ state, mapper, log: silentLogger(), adaptive: true, ...opts });
  state.subscribe((changes) => {
    mapper.apply(changes);
    notifier.apply(changes);
  });
  const sinks = ids.map((id) => new RecordingSink(id));
  for (const s of sinks) notifier.register(s);
  const close = async () => {
    notifier.close();
    await state.close();
    await store.close();
  };
  return { state, ids, sinks, close };
}

Deno.test("notifier (adaptive): the pause after a flush keeps the process within its CPU budget, and no longer", () => {
  const share = (flush: number, load: number, pause: number) =>
    (flush + load * pause) / (flush + pause);
  for (const flush of [0.5, 10, 106]) {
    for (const load of [0, 0.05, 0.13, 0.3, 0.44]) {
      const pause = flushPause(flush, load, 1e9);
      assert.ok(pause >= flush, `at least one flush's cost (flush ${flush}, load ${load})`);
      assert.ok(share(flush, load, pause) <= CPU_BUDGET + 1e-9, `within the budget at ${load}`);
      if (pause > flush) {
        // Any shorter pause would go over the budget.
        assert.ok(share(flush, load, pause * 0.99) > CPU_BUDGET, `the shortest at ${load}`);
      }
    }
  }
  // Churn as measured at 10,000 nodes: flushes of 106 ms, 13 % of the core for the rest, a
  // budget of 48 %: 106 × 0.52 / 0.35 ≈ 157 ms.
  const churn = flushPause(106, 0.13, 800);
  assert.ok(churn > 150 && churn < 165, `${churn.toFixed(0)} ms`);
  // Other work alone fills the budget: the whole window; and never past it.
  assert.equal(flushPause(106, CPU_BUDGET, 800), 800);
  assert.equal(flushPause(106, 0.9, 800), 800);
  assert.equal(flushPause(500, 0.3, 800), 800);
});

/** The process looks fully busy: its CPU time runs with the clock. */
const FULLY_BUSY = () => performance.now() * 1_000;

Deno.test("notifier (adaptive): a lone change goes out without waiting for the window; a burst goes out as one", async () => {
  // A window no test would wait for: anything that arrives came without it.
  const { state, ids, sinks, close } = await world(3, { batchDelayMs: 600_000 });
  try {
    const [a, b] = sinks;
    state.applyReport(ids[0], { endpoints: ["192.0.2.1:41641"] });
    await until("the lone change", () => b.got.length > 0 && sinks[2].got.length > 0);
    for (const peer of [b, sinks[2]]) {
      const [lone] = peer.take();
      assert.deepEqual(lone.PeersChangedPatch?.map((p) => p.NodeID), [ids[0]]);
    }
    assert.equal(a.got.length, 0, "no patch about itself");

    // Let the last flush's cost pass, then change every node in one go.
    await new Promise((r) => setTimeout(r, 50));
    for (const [i, id] of ids.entries()) {
      state.applyReport(id, { endpoints: [`192.0.2.${i + 10}:41641`] });
    }
    await until("the burst", () => sinks.every((s) => s.got.length > 0));
    for (const s of sinks) {
      const msgs = s.take();
      assert.equal(msgs.length, 1, "one message for changes made together");
      assert.equal(msgs[0].PeersChangedPatch?.length, 2, "both peers' changes in it");
    }
  } finally {
    await close();
  }
});

Deno.test("notifier (adaptive): under load a batch of status patches waits longer, and the next other change takes it along", async () => {
  const { state, ids, sinks, close } = await world(2, {
    batchDelayMs: 1_000,
    cpuMicros: FULLY_BUSY,
  });
  const b = sinks[1];
  try {
    // Two flushes 2.5 s apart teach the notifier the load (its average spans ~2 s).
    state.applyReport(ids[0], { endpoints: ["192.0.2.1:41641"] });
    await until("the first change", () => b.got.length > 0);
    await new Promise((r) => setTimeout(r, 2_500));
    state.applyReport(ids[0], { endpoints: ["192.0.2.2:41641"] });
    await until("the second change", () => b.got.length > 1);
    b.take();

    // A status patch alone: under load it may wait four windows (4 s) instead of one.
    const statusAt = performance.now();
    state.noteCapVersion(ids[0], 77);
    await new Promise((r) => setTimeout(r, 1_500));
    assert.equal(b.got.length, 0, "a status patch under load did not go out within a window");
    // Any other change goes out at the normal pace and takes the status patch with it.
    state.applyReport(ids[0], { endpoints: ["192.0.2.3:41641"] });
    await until("the endpoint change", () => b.got.length > 0);
    assert.ok(performance.now() - statusAt < 3_900, "before the status patch's own time");
    const msgs = b.take();
    assert.equal(msgs.length, 1);
    assert.deepEqual(msgs[0].PeersChangedPatch, [
      { NodeID: ids[0], Cap: 77, Endpoints: ["192.0.2.3:41641"] },
    ]);
  } finally {
    await close();
  }
});

Deno.test("notifier (adaptive): under load the window stretches with the number of sessions", async () => {
  // Fully busy, and one window per session: three sessions make the window three times 500 ms.
  const { state, ids, sinks, close } = await world(3, {
    batchDelayMs: 500,
    cpuMicros: FULLY_BUSY,
    sessionsPerWindow: 1,
  });
  const b = sinks[1];
  const arrived: number[] = [];
  const send = b.send.bind(b);
  b.send = (msg) => {
    arrived.push(performance.now());
    send(msg);
  };
  try {
    // Two flushes 2.5 s apart teach the notifier the load.
    state.applyReport(ids[0], { endpoints: ["192.0.2.1:41641"] });
    await until("the first change", () => arrived.length > 0);
    await new Promise((r) => setTimeout(r, 2_500));
    state.applyReport(ids[0], { endpoints: ["192.0.2.2:41641"] });
    await until("the second change", () => arrived.length > 1);
    // The next change waits the stretched window (1.5 s) after the last flush, not 500 ms.
    state.applyReport(ids[0], { endpoints: ["192.0.2.3:41641"] });
    await until("the third change", () => arrived.length > 2);
    const pause = arrived[2] - arrived[1];
    assert.ok(pause >= 1_400, `pause ${pause.toFixed(0)} ms with three sessions`);
    assert.deepEqual(b.take().map((m) => m.PeersChangedPatch?.[0].Endpoints), [
      ["192.0.2.1:41641"],
      ["192.0.2.2:41641"],
      ["192.0.2.3:41641"],
    ]);
  } finally {
    await close();
  }
});
