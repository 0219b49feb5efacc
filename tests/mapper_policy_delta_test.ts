import assert from "node:assert/strict";
import { parseConfigText } from "../lib/config/load.ts";
import { randomKey, TEST_DERP_MAP } from "./helpers/control.ts";
import { silentLogger } from "../lib/log/log.ts";
import { Mapper } from "../lib/mapper/mapper.ts";
import { Notifier } from "../lib/mapper/notifier.ts";
import { policyEngineView } from "../lib/mapper/policy_engine_view.ts";
import { allowAllPolicy } from "../lib/mapper/policy_view.ts";
import { PolicyManager } from "../lib/policy_manager/manager.ts";
import type { FilterRule, MapResponse } from "../lib/tailcfg/types.ts";
import { clientFilter, RecordingSink } from "./helpers/map_fixtures.ts";
import { openMemoryState } from "./helpers/memory_state.ts";

const WEB_80 = `{
  "tagOwners": { "tag:web": ["alice@"], "tag:srv": ["alice@"] },
  "acls": [{ "action": "accept", "src": ["alice@"], "dst": ["tag:web:80"] }],
}`;

/**
 * A tailnet wired as the server wires it: every batch of state changes goes to the mapper, then
 * the policy manager (database mode), whose answer (the affected nodes) goes to the notifier.
 * Nodes: alice's a1 and a2, bob's b1, tag:web, tag:srv.
 */
async function tailnet() {
  const config = parseConfigText(`policy:\n  mode: database\n`, { env: {} }).config;
  const log = silentLogger();
  const { store, state } = await openMemoryState({ log, config });
  const alice = await state.createUser({ name: "alice" });
  const bob = await state.createUser({ name: "bob" });
  const register = async (name: string, userId: number, tags: string[] = []) =>
    (await state.registerNode({
      machineKey: randomKey("mkey:"),
      nodeKey: randomKey("nodekey:"),
      hostname: name,
      hostinfo: { Hostname: name },
      userId,
      tags,
      authKeyId: null,
      method: "cli",
      ephemeral: false,
      expiry: null,
    })).id;
  const ids = {
    a1: await register("a1", alice.id),
    a2: await register("a2", alice.id),
    b1: await register("b1", bob.id),
    web: await register("web", alice.id, ["tag:web"]),
    srv: await register("srv", alice.id, ["tag:srv"]),
  };
  const policy = await PolicyManager.open({ config, store, state, log });
  const mapper = new Mapper({ state, config, derpMap: () => TEST_DERP_MAP });
  const notifier = new Notifier({ state, mapper, log, batchDelayMs: 60_000 });
  state.subscribe((changes) => {
    mapper.apply(changes);
    notifier.apply(changes, policy.apply(changes));
  });
  policy.attach({
    setPolicy(engine) {
      mapper.setPolicy(engine ? policyEngineView(engine) : allowAllPolicy(() => mapper.nodeIds()));
      state.announce({ kind: "policy-changed" });
    },
  });
  await policy.set(WEB_80);
  const sinks = new Map<number, RecordingSink>();
  for (const id of Object.values(ids)) {
    const sink = new RecordingSink(id);
    sinks.set(id, sink);
    notifier.register(sink);
  }
  notifier.flush();
  for (const s of sinks.values()) s.take();
  /** The messages of this flush, by node name (a node that got nothing is left out). */
  const flush = (): Record<string, MapResponse> => {
    notifier.flush();
    const out: Record<string, MapResponse> = {};
    for (const [name, id] of Object.entries(ids)) {
      const got = sinks.get(id)!.take();
      assert.ok(got.length <= 1, `${name} got one message per flush`);
      if (got.length === 1) out[name] = got[0];
    }
    return out;
  };
  return {
    state,
    mapper,
    notifier,
    policy,
    ids,
    flush,
    async close() {
      policy.close();
      notifier.close();
      await state.close();
      await store.close();
    },
  };
}

const ips = (id: number) => [`100.64.0.${id}`, `fd7a:115c:a1e0::${id}`];
/** Filters list consecutive addresses as ranges. */
const range = (
  from: number,
  to: number,
) => [`100.64.0.${from}-100.64.0.${to}`, `fd7a:115c:a1e0::${from}-fd7a:115c:a1e0::${to}`];

function srcIPs(rules: FilterRule[]): string[] {
  return rules.flatMap((r) => r.SrcIPs).sort();
}

function ports(rules: FilterRule[]): string[] {
  return [
    ...new Set(
      rules.flatMap((r) => (r.DstPorts ?? []).map((d) => `${d.Ports.First}-${d.Ports.Last}`)),
    ),
  ];
}

/** The rules of the filter chunks a response replaces. */
function rulesIn(m: MapResponse): FilterRule[] {
  return Object.values(m.PacketFilters ?? {}).flatMap((rules) => rules ?? []);
}

function peerIds(m: MapResponse): number[] {
  return (m.PeersChanged ?? []).map((p) => p.ID).sort((a, b) => a - b);
}

Deno.test("policy change to allow none: the web server and alice's nodes lose each other, others hear nothing", async () => {
  const t = await tailnet();
  try {
    const { a1, a2, web } = t.ids;
    const before = JSON.parse(t.mapper.fullMapJson(web)!) as MapResponse;
    assert.equal(a2, a1 + 1);
    assert.deepEqual(srcIPs(clientFilter([before])), range(a1, a2));
    assert.deepEqual(ports(clientFilter([before])), ["80-80"]);

    await t.policy.set(`{ "acls": [] }`);
    const got = t.flush();
    assert.deepEqual(Object.keys(got).sort(), ["a1", "a2", "web"], "b1 and srv are unaffected");
    assert.deepEqual(got.a1.PeersRemoved, [web]);
    assert.deepEqual(got.a2.PeersRemoved, [web]);
    assert.equal(got.a1.PacketFilters, undefined, "a1's filter was and is empty");
    assert.equal(got.a1.Peers, undefined, "a delta, not a full map");
    assert.deepEqual(got.web.PeersRemoved, [a1, a2]);
    assert.deepEqual(clientFilter([before, got.web]), [], "nothing may reach web any more");
    for (const m of Object.values(got)) {
      assert.equal(m.PeersChanged, undefined);
      assert.equal(m.Node, undefined, "capabilities did not change");
    }
    assert.deepEqual(t.flush(), {}, "nothing left to send");
  } finally {
    await t.close();
  }
});

Deno.test("policy change to allow all: each node gets exactly the peers it lacked, with their users", async () => {
  const t = await tailnet();
  try {
    const { a1, a2, b1, web, srv } = t.ids;
    await t.policy.set(
      `{ "acls": [{ "action": "accept", "src": ["*"], "dst": ["*:*"] }] }`,
    );
    const got = t.flush();
    assert.deepEqual(Object.keys(got).sort(), ["a1", "a2", "b1", "srv", "web"]);
    assert.deepEqual(peerIds(got.a1), [a2, b1, srv], "a1 had web already");
    assert.deepEqual(peerIds(got.a2), [a1, b1, srv]);
    assert.deepEqual(peerIds(got.b1), [a1, a2, web, srv]);
    assert.deepEqual(peerIds(got.srv), [a1, a2, b1, web]);
    assert.deepEqual(peerIds(got.web), [b1, srv], "web had alice's nodes already");
    for (const [name, m] of Object.entries(got)) {
      assert.equal(m.PeersRemoved, undefined, name);
      assert.equal(m.Peers, undefined, `${name}: a delta`);
      assert.deepEqual(ports(rulesIn(m)), ["0-65535"], `${name}: all ports open`);
    }
    const logins = (m: MapResponse) => m.UserProfiles!.map((u) => u.LoginName).sort();
    assert.deepEqual(logins(got.b1), ["alice", "tagged-devices"]);
    assert.ok(logins(got.a1).includes("bob"), "b1's owner comes with b1");
  } finally {
    await t.close();
  }
});

Deno.test("policy change adding a tag rule and SSH: only web and srv hear, with the new filter and SSH policy", async () => {
  const t = await tailnet();
  try {
    const { web, srv } = t.ids;
    await t.policy.set(`{
      "tagOwners": { "tag:web": ["alice@"], "tag:srv": ["alice@"] },
      "acls": [
        { "action": "accept", "src": ["alice@"], "dst": ["tag:web:80"] },
        { "action": "accept", "src": ["tag:web"], "dst": ["tag:srv:5432"] },
      ],
      "ssh": [{ "action": "accept", "src": ["tag:web"], "dst": ["tag:srv"], "users": ["root"] }],
    }`);
    const got = t.flush();
    assert.deepEqual(Object.keys(got).sort(), ["srv", "web"], "alice's and bob's nodes unaffected");
    assert.deepEqual(peerIds(got.web), [srv]);
    assert.equal(got.web.PacketFilters, undefined, "web's own filter did not change");
    assert.equal(got.web.SSHPolicy, undefined);
    assert.deepEqual(peerIds(got.srv), [web]);
    assert.deepEqual(srcIPs(rulesIn(got.srv)), ips(web).sort());
    assert.deepEqual(ports(rulesIn(got.srv)), ["5432-5432"]);
    assert.ok(got.srv.SSHPolicy!.rules.length > 0);
    assert.equal(got.srv.Node, undefined, "its capabilities did not change (SSH was one already)");

    // Dropping the SSH rules again clears the policy on srv (the capability stays).
    await t.policy.set(`{
      "tagOwners": { "tag:web": ["alice@"], "tag:srv": ["alice@"] },
      "acls": [
        { "action": "accept", "src": ["alice@"], "dst": ["tag:web:80"] },
        { "action": "accept", "src": ["tag:web"], "dst": ["tag:srv:5432"] },
      ],
    }`);
    const again = t.flush();
    assert.deepEqual(Object.keys(again), ["srv"]);
    assert.deepEqual(again.srv.SSHPolicy, { rules: [] });
    assert.equal(again.srv.Node, undefined, "every node keeps the SSH capability");
    assert.equal(again.srv.PeersChanged, undefined);
  } finally {
    await t.close();
  }
});

Deno.test("a node's tag change reaches only the sessions it affects, as deltas", async () => {
  const t = await tailnet();
  try {
    const { a1, a2, b1 } = t.ids;
    const b1Before = JSON.parse(t.mapper.fullMapJson(b1)!) as MapResponse;
    // b1 becomes a web server: alice's nodes now see it, and it sees them.
    await t.state.setNodeTags(b1, ["tag:web"]);
    const got = t.flush();
    assert.deepEqual(Object.keys(got).sort(), ["a1", "a2", "b1"], "web and srv are unaffected");
    for (const name of ["a1", "a2"] as const) {
      assert.deepEqual(peerIds(got[name]), [b1], name);
      assert.equal(got[name].PeersChanged!.length, 1, `${name}: b1 once`);
      assert.equal(got[name].PacketFilters, undefined, `${name}: filter unchanged`);
    }
    assert.equal(got.b1.Peers, undefined, "b1 gets a delta too");
    assert.deepEqual(peerIds(got.b1), [a1, a2]);
    assert.deepEqual(got.b1.Node!.Tags, ["tag:web"]);
    assert.deepEqual(srcIPs(rulesIn(got.b1)), range(a1, a2));
    assert.deepEqual(srcIPs(clientFilter([b1Before, got.b1])), range(a1, a2));

    // Retagged as a database server: alice's nodes lose it, it loses them, its filter empties.
    await t.state.setNodeTags(b1, ["tag:srv"]);
    const moved = t.flush();
    assert.deepEqual(Object.keys(moved).sort(), ["a1", "a2", "b1"]);
    assert.deepEqual(moved.a1.PeersRemoved, [b1]);
    assert.equal(moved.a1.PeersChanged, undefined, "no full node of a peer it no longer sees");
    assert.deepEqual(moved.a2.PeersRemoved, [b1]);
    assert.deepEqual(moved.b1.PeersRemoved, [a1, a2]);
    assert.deepEqual(clientFilter([b1Before, got.b1, moved.b1]), [], "its filter empties");
    assert.deepEqual(moved.b1.Node!.Tags, ["tag:srv"]);
  } finally {
    await t.close();
  }
});

Deno.test("remembered peer sets do not pile up across policy changes, and go with their sessions", async () => {
  const t = await tailnet();
  try {
    const start = t.notifier.policySync.peerMemory();
    for (let i = 0; i < 3; i++) {
      await t.policy.set(`{ "acls": [] }`);
      t.flush();
      await t.policy.set(`{ "acls": [{ "action": "accept", "src": ["*"], "dst": ["*:*"] }] }`);
      t.flush();
      await t.policy.set(WEB_80);
      t.flush();
    }
    assert.deepEqual(t.notifier.policySync.peerMemory(), start);
    assert.equal(t.notifier.policySync.size, 5);
    await t.state.deleteNode(t.ids.b1);
    const got = t.flush();
    assert.deepEqual(got.a1.PeersRemoved, [t.ids.b1], "a removal still reaches everyone");
    assert.equal(t.notifier.policySync.size, 4, "the deleted node's session is forgotten");
  } finally {
    await t.close();
  }
});

Deno.test("a user rename that changes who the policy names reaches that user's peers as deltas", async () => {
  const t = await tailnet();
  try {
    const { a1, a2, web } = t.ids;
    const before = JSON.parse(t.mapper.fullMapJson(web)!) as MapResponse;
    const alice = t.state.getUserByName("alice")!;
    await t.state.renameUser(alice.id, "alicia");
    const got = t.flush();
    assert.deepEqual(Object.keys(got).sort(), ["a1", "a2", "web"], "b1 and srv hear nothing");
    assert.deepEqual(got.a1.PeersRemoved, [web], "alice@ no longer names a1's owner");
    assert.deepEqual(got.a2.PeersRemoved, [web]);
    assert.deepEqual(got.web.PeersRemoved, [a1, a2]);
    assert.deepEqual(clientFilter([before, got.web]), []);
    assert.equal(got.web.Peers, undefined);
  } finally {
    await t.close();
  }
});
