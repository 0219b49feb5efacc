import assert from "node:assert/strict";
import { parseConfigText } from "../lib/config/load.ts";
import { silentLogger } from "../lib/log/log.ts";
import { chunkJson, FilterChunker } from "../lib/mapper/filter_chunks.ts";
import { Mapper } from "../lib/mapper/mapper.ts";
import { Notifier } from "../lib/mapper/notifier.ts";
import { policyEngineView } from "../lib/mapper/policy_engine_view.ts";
import { parsePolicy, PolicyEngine } from "../lib/policy/mod.ts";
import { syntheticTailnet } from "../lib/policy/synthetic.ts";
import { toPolicyNode } from "../lib/policy_manager/manager.ts";
import type { Change } from "../lib/state/events.ts";
import type { NodeRecord } from "../lib/store/types.ts";
import type { FilterRule, MapResponse } from "../lib/tailcfg/types.ts";
import { TEST_DERP_MAP } from "./helpers/control.ts";
import {
  clientFilter,
  mapStateOver,
  nodeRecord,
  normaliseFilter,
  RecordingSink,
} from "./helpers/map_fixtures.ts";

const rulesOf = (chunks: { key: string; src: string; rest: string }[]): FilterRule[] =>
  chunks.flatMap((c) => JSON.parse(chunkJson(c)) as FilterRule[]);

Deno.test("filter chunks put back together are the filter, under keys of their own", () => {
  const synth = syntheticTailnet({
    nodes: 600,
    users: 20,
    groups: 8,
    tags: 12,
    rules: 60,
    seed: 3,
  });
  const engine = new PolicyEngine(parsePolicy(synth.policy), synth.users, synth.nodes);
  const chunker = new FilterChunker();
  let rules = 0;
  let chunks = 0;
  for (const n of synth.nodes) {
    const filter = engine.filterFor(n.id);
    const got = chunker.chunks(filter);
    rules += filter.length;
    chunks += got.length;
    assert.equal(new Set(got.map((c) => c.key)).size, got.length, `node ${n.id}: unique keys`);
    assert.ok(!got.some((c) => c.key === "*"), "never the client's clear-all key");
    assert.deepEqual(normaliseFilter(rulesOf(got)), normaliseFilter(filter), `node ${n.id}`);
    // From the memo: the same chunks again.
    assert.deepEqual(chunker.chunks(filter), got, `node ${n.id}, again`);
  }
  assert.ok(rules > 600, "the synthetic policy gives real filters");
  assert.ok(chunks > rules, "some rules are big enough to be split");
  // Members that JSON leaves out are left out here too.
  const odd = [{ SrcIPs: Object.freeze(["*"]), DstPorts: undefined, IPProto: [6] }];
  assert.deepEqual(rulesOf(chunker.chunks(odd as unknown as FilterRule[])), [
    { SrcIPs: ["*"], IPProto: [6] },
  ]);
});

Deno.test("one source more or less changes one chunk of a big rule, or its neighbours too", () => {
  const addr = (i: number) => `100.64.${i >> 8}.${i & 255}`;
  const all = Array.from({ length: 4000 }, (_, i) => addr(2 * i + 1)); // odd: room between
  const rule = (src: string[]): FilterRule[] => [{
    SrcIPs: Object.freeze(src) as string[],
    DstPorts: [{ IP: "100.100.0.1", Ports: { First: 0, Last: 65535 } }],
  }];
  const chunker = new FilterChunker();
  const before = chunker.chunks(rule(all));
  assert.ok(before.length >= 30, `${before.length} chunks for 4,000 sources`);
  assert.ok(before.length <= 4000 / 16, "chunks are not tiny");
  for (const at of [0, 1, 777, 2000, 3999, 4000]) {
    const plus = [...all.slice(0, at), addr(2 * at), ...all.slice(at)];
    const minus = [...all.slice(0, at), ...all.slice(at + 1)];
    for (const next of at < all.length ? [plus, minus] : [plus]) {
      const after = chunker.chunks(rule(next));
      const old = new Map(before.map((c) => [c.key, chunkJson(c)]));
      let differ = 0;
      for (const c of after) {
        if (old.get(c.key) !== chunkJson(c)) differ++;
        old.delete(c.key);
      }
      differ += old.size; // chunks that went away
      assert.ok(differ >= 1 && differ <= 3, `at ${at}: ${differ} chunks differ`);
      assert.deepEqual(normaliseFilter(rulesOf(after)), normaliseFilter(rule(next)));
    }
  }
});

// ---- through the notifier: a shared server that every member may reach ----------------------

const { config } = parseConfigText("", { env: {} });
const POLICY = `{
  "tagOwners": { "tag:shared": ["u1@"] },
  "acls": [{ "action": "accept", "src": ["autogroup:member"], "dst": ["tag:shared:*"] }],
}`;

function world(members: number) {
  const SHARED = 10_000;
  const nodes = new Map<number, NodeRecord>();
  // Every other address: the members' addresses are no one range.
  for (let id = 2; id <= 2 * members; id += 2) {
    nodes.set(id, nodeRecord(id, { userId: (id % 5) + 1 }));
  }
  nodes.set(SHARED, nodeRecord(SHARED, { tags: ["tag:shared"] }));
  const users = Array.from({ length: 5 }, (_, i) => ({ id: i + 1, name: `u${i + 1}` }));
  const engine = new PolicyEngine(
    parsePolicy(POLICY),
    users,
    [...nodes.values()].map(toPolicyNode),
  );
  const state = mapStateOver(nodes);
  const mapper = new Mapper({
    state,
    config,
    policy: policyEngineView(engine),
    derpMap: () => TEST_DERP_MAP,
  });
  const notifier = new Notifier({ state, mapper, log: silentLogger(), batchDelayMs: 60_000 });
  const shared = new RecordingSink(SHARED);
  notifier.register(shared);
  const full = JSON.parse(mapper.fullMapMessages(SHARED)![0].json) as MapResponse;
  return {
    engine,
    shared,
    full,
    /** Nodes come and go as the state would say, and the notifier sends what it batched. */
    change(add: NodeRecord[], remove: number[]) {
      const changes: Change[] = [];
      const affected = new Set<number>();
      for (const n of add) {
        nodes.set(n.id, n);
        for (const id of engine.upsertNode(toPolicyNode(n))) affected.add(id);
        changes.push({ kind: "node-added", nodeId: n.id });
      }
      for (const id of remove) {
        const node = nodes.get(id);
        nodes.delete(id);
        for (const a of engine.removeNode(id)) affected.add(a);
        changes.push({ kind: "node-removed", nodeId: id, node });
      }
      mapper.apply(changes);
      notifier.apply(changes, affected);
      notifier.flush();
      return shared.take();
    },
    close: () => notifier.close(),
  };
}

Deno.test("a member joining sends the shared server one or two filter chunks, not its whole filter", () => {
  const w = world(1500);
  try {
    const wholeFilter = JSON.stringify(clientFilter([w.full])).length;
    assert.ok(wholeFilter > 60_000, `the shared server's filter is big (${wholeFilter} bytes)`);
    const got: MapResponse[] = [w.full];
    for (const id of [1501, 1503, 3001, 5000]) {
      const [delta] = w.change([nodeRecord(id, { userId: 2 })], []);
      assert.equal(delta.Peers, undefined, "a delta");
      const chunks = Object.keys(delta.PacketFilters ?? {});
      assert.ok(chunks.length >= 1 && chunks.length <= 2, `node ${id}: ${chunks.length} chunks`);
      assert.ok(JSON.stringify(delta.PacketFilters).length < wholeFilter / 10);
      got.push(delta);
      assert.deepEqual(
        normaliseFilter(clientFilter(got)),
        normaliseFilter(w.engine.filterFor(10_000)),
        `after node ${id} joined`,
      );
    }
    // A member leaving: its addresses leave the rule.
    const [left] = w.change([], [700]);
    assert.ok(Object.keys(left.PacketFilters ?? {}).length <= 3);
    got.push(left);
    const now = normaliseFilter(clientFilter(got));
    assert.deepEqual(now, normaliseFilter(w.engine.filterFor(10_000)));
    assert.ok(!now.some((r) => r.SrcIPs.includes("100.64.2.188")), "node 700's address is gone");
    // The next full map (a resync) replaces every chunk the client held.
    const resync = clientFilter([w.full, ...got.slice(1), {
      PacketFilters: JSON.parse(JSON.stringify(w.full.PacketFilters)),
    } as MapResponse]);
    assert.deepEqual(normaliseFilter(resync), normaliseFilter(clientFilter([w.full])));
  } finally {
    w.close();
  }
});
