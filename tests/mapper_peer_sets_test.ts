import assert from "node:assert/strict";
import { parseConfigText } from "../lib/config/load.ts";
import { TEST_DERP_MAP } from "./helpers/control.ts";
import { silentLogger } from "../lib/log/log.ts";
import { Mapper } from "../lib/mapper/mapper.ts";
import { Notifier } from "../lib/mapper/notifier.ts";
import { EVERYONE, PeerSetPool, sortedIds } from "../lib/mapper/peer_sets.ts";
import { policyEngineView } from "../lib/mapper/policy_engine_view.ts";
import { ALLOW_ALL_FILTER, type PolicyView } from "../lib/mapper/policy_view.ts";
import { parsePolicy, PolicyEngine } from "../lib/policy/mod.ts";
import type { Change } from "../lib/state/events.ts";
import type { NodeRecord } from "../lib/store/types.ts";
import { mapStateOver, nodeRecord, RecordingSink } from "./helpers/map_fixtures.ts";
import { toPolicyNode } from "../lib/policy_manager/manager.ts";

const ids = (...xs: number[]) => Int32Array.from(xs);

Deno.test("peer sets: nodes that see each other share one array; so do nodes that see the same others", () => {
  const pool = new PeerSetPool();
  // A group {1,2,3} that sees itself.
  const r1 = pool.intern(ids(2, 3), 1);
  const r2 = pool.intern(ids(1, 3), 2);
  const r3 = pool.intern(ids(1, 2), 3);
  assert.equal(r1.set, r2.set);
  assert.equal(r2.set, r3.set);
  assert.deepEqual([...r1.set!.ids], [1, 2, 3]);
  // Clients 10 and 11 see servers {20,21} but not each other.
  const c10 = pool.intern(ids(20, 21), 10);
  const c11 = pool.intern(ids(20, 21), 11);
  assert.equal(c10.set, c11.set);
  assert.equal(pool.setCount, 2);
  const everyone = ids(1, 2, 3, 10, 11, 20, 21);
  for (
    const [rec, self, peers] of [[r1, 1, [2, 3]], [c10, 10, [20, 21]], [c11, 11, [20, 21]]] as const
  ) {
    for (const id of everyone) {
      assert.equal(pool.has(rec, self, id, everyone), (peers as readonly number[]).includes(id));
    }
    assert.equal(pool.count(rec, self, everyone), peers.length);
  }
  // Released by all holders, a set is forgotten.
  for (const r of [r1, r2, r3]) pool.release(r);
  assert.equal(pool.setCount, 1);
  for (const r of [c10, c11]) pool.release(r);
  assert.equal(pool.setCount, 0);
  assert.equal(pool.idCount, 0);
});

Deno.test("peer sets: diffs and toggles, from and to everyone", () => {
  const pool = new PeerSetPool();
  const everyone = ids(1, 2, 3, 4, 5);
  const small = pool.intern(ids(2), 1);
  assert.deepEqual(pool.diff(EVERYONE, small, 1, everyone), { added: [], removed: [3, 4, 5] });
  assert.deepEqual(pool.diff(small, EVERYONE, 1, everyone), { added: [3, 4, 5], removed: [] });
  // The same pair of sets, another node: its own id never shows.
  const small2 = pool.intern(ids(1), 2);
  assert.equal(small2.set, small.set);
  assert.deepEqual(pool.diff(EVERYONE, small2, 2, everyone), { added: [], removed: [3, 4, 5] });
  // Ids of nodes gone from the tailnet are not reported removed (everyone was told).
  const stale = pool.intern(ids(2, 9), 1);
  assert.deepEqual(pool.diff(stale, small, 1, everyone), { added: [], removed: [] });
  // Toggles share their result between sessions with the same record and changes.
  const t1 = pool.toggle(small, [4], [], everyone);
  const t2 = pool.toggle(small2, [4], [], everyone);
  assert.equal(t1, t2);
  assert.equal(pool.has(t1, 1, 4, everyone), true);
  assert.equal(pool.has(t1, 1, 2, everyone), true);
  assert.equal(pool.has(t2, 2, 1, everyone), true);
  const t3 = pool.toggle(EVERYONE, [], [5], everyone);
  assert.deepEqual(pool.diff(EVERYONE, t3, 3, everyone), { added: [], removed: [5] });
  pool.endRound();
  for (const r of [small, small2, stale, t1, t2, t3]) pool.release(r);
  assert.equal(pool.setCount, 0);
});

Deno.test("peer sets: sortedIds sorts, drops duplicates and the node itself", () => {
  assert.deepEqual([...sortedIds([5, 3, 3, 9, 1], 9)], [1, 3, 5]);
  assert.deepEqual([...sortedIds(new Set([1, 2, 3]), 2)], [1, 3]);
});

// ---- sessions over an in-memory tailnet ----------------------------------------------------

const { config } = parseConfigText("", { env: {} });

function userNode(id: number, userId: number, tags: string[] = []): NodeRecord {
  return nodeRecord(id, { userId: tags.length > 0 ? null : userId, tags });
}

function sessions(nodes: NodeRecord[], policy: PolicyView) {
  const byId = new Map(nodes.map((n) => [n.id, n]));
  let listeners: Array<(c: readonly Change[]) => void> = [];
  const state = {
    ...mapStateOver(byId),
    subscribe(l: (c: readonly Change[]) => void) {
      listeners.push(l);
      return () => listeners = listeners.filter((x) => x !== l);
    },
  };
  const mapper = new Mapper({ state, config, policy, derpMap: () => TEST_DERP_MAP });
  const notifier = new Notifier({ state, mapper, log: silentLogger(), batchDelayMs: 60_000 });
  state.subscribe((changes) => {
    mapper.apply(changes);
    notifier.apply(changes);
  });
  const sinks = new Map<number, RecordingSink>();
  for (const n of nodes) {
    const s = new RecordingSink(n.id);
    sinks.set(n.id, s);
    notifier.register(s);
  }
  return {
    mapper,
    notifier,
    sinks,
    announce: (c: Change) => listeners.forEach((l) => l([c])),
  };
}

Deno.test("policy sync: an allow-all policy over 300 sessions holds one peer array", () => {
  const nodes = Array.from({ length: 300 }, (_, i) => userNode(i + 1, (i % 7) + 1));
  const engine = new PolicyEngine(
    parsePolicy(`{ "acls": [{ "action": "accept", "src": ["*"], "dst": ["*:*"] }] }`),
    Array.from({ length: 7 }, (_, i) => ({ id: i + 1, name: `u${i + 1}` })),
    nodes.map(toPolicyNode),
  );
  const s = sessions(nodes, policyEngineView(engine));
  try {
    assert.equal(s.notifier.policySync.size, 300);
    assert.deepEqual(s.notifier.policySync.peerMemory(), { sets: 1, ids: 300 });
  } finally {
    s.notifier.close();
  }
});

Deno.test("policy sync: a delta larger than the full map becomes a full map", () => {
  // 600 nodes that all see each other; then each sees only its pair partner.
  let pairs = false;
  const partner = (id: number) => id % 2 === 1 ? id + 1 : id - 1;
  const policy: PolicyView = {
    *peersOf(id) {
      if (pairs) {
        yield partner(id);
        return;
      }
      for (let other = 1; other <= 600; other++) if (other !== id) yield other;
    },
    canSee: (a, b) => a !== b && (!pairs || b === partner(a)),
    filterFor: () => ALLOW_ALL_FILTER,
    sshPolicyFor: () => null,
  };
  const nodes = Array.from({ length: 600 }, (_, i) => userNode(i + 1, 1));
  const s = sessions(nodes, policy);
  try {
    pairs = true;
    s.announce({ kind: "policy-changed" });
    s.notifier.flush();
    const [m] = s.sinks.get(7)!.take();
    assert.deepEqual(m.Peers!.map((p) => p.ID), [8], "a full map: one peer, not 598 removals");
    assert.ok(m.Node && m.PacketFilters);
    assert.equal(s.sinks.get(7)!.take().length, 0);
    // And the next change is a delta against what that full map gave.
    pairs = false;
    s.announce({ kind: "policy-changed" });
    s.notifier.flush();
    const [back] = s.sinks.get(7)!.take();
    assert.equal(back.Peers, undefined);
    assert.equal(back.PeersChanged!.length, 598);
    assert.ok(!back.PeersChanged!.some((p) => p.ID === 7 || p.ID === 8));
  } finally {
    s.notifier.close();
  }
});
