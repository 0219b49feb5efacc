/**
 * Who gets which items of a batch (lib/mapper/fanout.ts): everyone who sees a node gets the
 * items about it, the node itself never does, and sessions with the same items share a group.
 */
import assert from "node:assert/strict";
import fc from "fast-check";
import { createFanout } from "../lib/mapper/fanout.ts";
import { allowAllPolicy, type PolicyView } from "../lib/mapper/policy_view.ts";

/** A policy where nodes see each other when their ids have the same parity. */
function parityPolicy(ids: number[]): PolicyView {
  return {
    ...allowAllPolicy(() => ids),
    *peersOf(n: number) {
      for (const id of ids) if (id !== n && id % 2 === n % 2) yield id;
    },
    seesEveryone: () => false,
  };
}

Deno.test("fanout: each session gets the items about the nodes it sees, never about itself", () => {
  const ids = Array.from({ length: 12 }, (_, i) => i + 1);
  fc.assert(
    fc.property(
      fc.boolean(),
      fc.array(fc.constantFrom(...ids), { maxLength: 20 }),
      fc.subarray(ids),
      fc.array(fc.subarray(ids, { minLength: 1, maxLength: 3 }), { maxLength: 3 }),
      (allowAll, about, sessions, profiles) => {
        const policy = allowAll ? allowAllPolicy(() => ids) : parityPolicy(ids);
        const withSession = new Set(sessions);
        const fanout = createFanout(policy, (id) => withSession.has(id));
        // Items in order: one per entry of `about`, then profile items for viewers of owners.
        const want = new Map<number, number[]>(sessions.map((s) => [s, []]));
        let index = 0;
        for (const node of about) {
          fanout.add(index, node);
          for (const s of sessions) {
            if (s !== node && [...policy.peersOf(node)].includes(s)) want.get(s)!.push(index);
          }
          index++;
        }
        for (const owners of profiles) {
          fanout.addToViewersOf(index, owners);
          for (const s of sessions) {
            const sees = owners.some((o) => o === s || [...policy.peersOf(o)].includes(s));
            if (sees) want.get(s)!.push(index);
          }
          index++;
        }
        const groups = new Map<string, unknown>();
        for (const s of sessions) {
          const g = fanout.groupOf(s);
          assert.deepEqual(g.items(), want.get(s), `session ${s}`);
          assert.equal(g.empty, want.get(s)!.length === 0);
          // Sessions that get the same items share one group (one message).
          const key = JSON.stringify(g.items());
          if (groups.has(key) && allowAll) assert.equal(groups.get(key), g);
          groups.set(key, g);
        }
      },
    ),
    { numRuns: 300 },
  );
});

Deno.test("fanout: allow-all with thousands of changed nodes keeps only a list per changed node", () => {
  // A restart storm's batch: every node changed. The groups are made when asked for, one list
  // each; a group per (node, item) pair (k² of them) held ~1 GB here.
  const k = 4_000;
  const ids = Array.from({ length: k }, (_, i) => i + 1);
  const fanout = createFanout(allowAllPolicy(() => ids), () => true);
  const before = Deno.memoryUsage().heapUsed;
  for (let i = 0; i < k; i++) fanout.add(i, ids[i]);
  assert.ok(Deno.memoryUsage().heapUsed - before < 50 << 20, "adding k items stays small");
  let total = 0;
  for (const id of ids) {
    const items = fanout.groupOf(id).items();
    assert.equal(items.includes(id - 1), false);
    total += items.length;
  }
  assert.equal(total, k * (k - 1));
});
