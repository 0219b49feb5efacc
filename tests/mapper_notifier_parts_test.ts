/** The notifier's three parts, each alone: batch.ts, fanout.ts, delta.ts. */
import assert from "node:assert/strict";
import { addChanges, emptyBatch } from "../lib/mapper/batch.ts";
import { deltaJson, type Item } from "../lib/mapper/delta.ts";
import { createFanout } from "../lib/mapper/fanout.ts";
import type { Mapper } from "../lib/mapper/mapper.ts";
import { ALLOW_ALL_FILTER, allowAllPolicy, type PolicyView } from "../lib/mapper/policy_view.ts";
import type { Json } from "../lib/tailcfg/json.ts";
import type { Node, PeerChange, UserProfile } from "../lib/tailcfg/types.ts";

Deno.test("batch: each kind of change lands where the wire needs it", () => {
  const b = emptyBatch();
  addChanges(b, [
    { kind: "node-added", nodeId: 1 },
    { kind: "node-updated", nodeId: 2, peersOnly: true },
    { kind: "node-expired", nodeId: 3 },
    { kind: "node-patched", nodeId: 4, patch: { endpoints: ["192.0.2.1:1"] } },
    { kind: "node-patched", nodeId: 4, patch: { online: true } },
    { kind: "node-patched", nodeId: 5, patch: { nodeKey: "nodekey:ab", keyExpiry: null } },
    { kind: "node-removed", nodeId: 6 },
    { kind: "primary-routes-changed", nodeId: 6 },
    { kind: "primary-routes-changed", nodeId: 7 },
    { kind: "user-updated", userId: 9 },
    { kind: "dns-changed" },
  ]);
  assert.deepEqual([...b.full].sort(), [1, 2, 3, 5, 7]);
  assert.deepEqual([...b.self].sort(), [1, 3, 5], "a peers-only update leaves the node's own view");
  assert.deepEqual(b.patches.get(4), { endpoints: ["192.0.2.1:1"], online: true }, "merged");
  assert.ok(!b.patches.has(5), "a key that stops expiring cannot be a PeerChange");
  assert.deepEqual([...b.removed], [6]);
  assert.ok(!b.full.has(6), "a removed router's route change is not sent as a node");
  assert.deepEqual([...b.users], [9]);
  assert.ok(b.dns && !b.derp && !b.policy);
});

Deno.test("fanout: with everyone seeing everyone, sessions share one group; a changed node branches off", () => {
  const sessions = new Set([1, 2, 3]);
  const f = createFanout(allowAllPolicy(() => [1, 2, 3]), (id) => sessions.has(id));
  f.add(0, 1); // about node 1
  f.add(1, 2); // about node 2
  assert.deepEqual(f.groupOf(3).items(), [0, 1], "an unchanged node gets everything");
  assert.deepEqual(f.groupOf(1).items(), [1], "never an item about itself");
  assert.deepEqual(f.groupOf(2).items(), [0]);
  assert.equal(f.groupOf(3), f.groupOf(4), "sessions with the same items share the group");
});

Deno.test("fanout: with a policy, an item goes only to the nodes that see it", () => {
  const sees: Record<number, number[]> = { 1: [2], 2: [1, 3], 3: [2] };
  const policy: PolicyView = {
    peersOf: (id) => sees[id] ?? [],
    canSee: (a, b) => (sees[a] ?? []).includes(b),
    filterFor: () => ALLOW_ALL_FILTER,
    sshPolicyFor: () => null,
  };
  const f = createFanout(policy, () => true);
  f.add(0, 1);
  assert.deepEqual(f.groupOf(2).items(), [0]);
  assert.deepEqual(f.groupOf(3).items(), [], "node 3 does not see node 1");
  f.addToViewersOf(1, [3]);
  assert.deepEqual(f.groupOf(3).items(), [1], "a profile reaches the node and who sees it");
  assert.deepEqual(f.groupOf(2).items(), [0, 1]);
});

Deno.test("delta: members in wire order; nothing about a peer the policy just took away", () => {
  const mapper = {
    peerEntry: (id: number) => ({ json: `{"ID":${id}}` as Json<Node>, user: 7 }),
    profileJsonOf: (u: number) => `{"ID":${u}}` as Json<UserProfile>,
  } as unknown as Mapper;
  const items: Item[] = [
    { kind: "full", json: '{"ID":2}' as Json<Node>, nodeId: 2, user: 7 },
    { kind: "patch", json: '{"NodeID":3}' as Json<PeerChange>, nodeId: 3, user: null },
    { kind: "patch", json: '{"NodeID":4}' as Json<PeerChange>, nodeId: 4, user: null },
  ];
  const json = deltaJson(mapper, items, { removed: [9], derpJson: null }, {
    selfJson: '{"ID":1}' as Json<Node>,
    dnsJson: null,
    policy: {
      full: false,
      added: [5],
      removed: [4],
      filtersJson: null,
      sshJson: null,
      selfChanged: false,
    },
  });
  assert.equal(
    json,
    '{"Node":{"ID":1},"PeersChanged":[{"ID":2},{"ID":5}],"PeersChangedPatch":[{"NodeID":3}],' +
      '"PeersRemoved":[9,4],"UserProfiles":[{"ID":7}]}',
  );
});
