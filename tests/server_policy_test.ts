import assert from "node:assert/strict";
import { PolicyManager } from "../lib/policy_manager/manager.ts";
import type { PolicyEngine } from "../lib/policy/mod.ts";
import { parseConfigText } from "../lib/config/load.ts";
import { silentLogger } from "../lib/log/log.ts";
import { PolicyInvalidError } from "../lib/policy_manager/errors.ts";
import { openMemoryState } from "./helpers/memory_state.ts";

const hex = (n: number) => n.toString(16).padStart(64, "0");

const WEB_ONLY = `{
  // alice may reach tag:web on port 80, nothing else
  "tagOwners": { "tag:web": ["alice@"] },
  "acls": [{ "action": "accept", "src": ["alice@"], "dst": ["tag:web:80"] }],
  "tests": [{ "src": "alice@", "accept": ["tag:web:80"], "deny": ["tag:web:22"] }],
}`;

async function setup(mode: "file" | "database", policyPath = "") {
  const config = parseConfigText(`policy:\n  mode: ${mode}\n  path: "${policyPath}"\n`).config;
  const { store, state } = await openMemoryState({ config });
  const alice = await state.createUser({ name: "alice" });
  const register = (n: number, tags: string[], userId: number | null = alice.id) =>
    state.registerNode({
      machineKey: `mkey:${hex(n)}`,
      nodeKey: `nodekey:${hex(n)}`,
      hostname: `node${n}`,
      hostinfo: { Hostname: `node${n}` },
      userId,
      tags,
      authKeyId: null,
      method: "cli",
      ephemeral: false,
      expiry: null,
    });
  const laptop = await register(1, []);
  const web = await register(2, ["tag:web"]);
  const manager = await PolicyManager.open({ config, store, state, log: silentLogger() });
  const seen: { engine: PolicyEngine | null; resynced: number[][] } = {
    engine: null,
    resynced: [],
  };
  manager.attach({ setPolicy: (engine) => seen.engine = engine });
  // As server.ts does: every batch of changes goes through the manager, which names who is affected.
  state.subscribe((changes) => {
    const ids = manager.apply(changes);
    if (ids.size > 0) seen.resynced.push([...ids]);
  });
  return { config, store, state, manager, seen, laptop, web, register };
}

Deno.test("policy manager: database mode sets, checks and refuses, keeping the old policy", async () => {
  const { store, manager, seen, laptop, web } = await setup("database");
  try {
    assert.equal(seen.engine, null, "no policy: allow all");
    await manager.set(WEB_ONLY);
    const engine = seen.engine as PolicyEngine | null;
    assert.ok(engine);
    assert.deepEqual([...engine.peersOf(laptop.id)], [web.id]);
    const rules = engine.filterFor(web.id);
    const ports = new Set(
      rules.flatMap((r) => r.DstPorts?.map((d) => `${d.Ports.First}-${d.Ports.Last}`) ?? []),
    );
    assert.deepEqual([...ports], ["80-80"], "only port 80, on each of the node's addresses");
    assert.equal(await store.getPolicy(), WEB_ONLY, "stored durably");

    // A policy whose own tests fail is refused by check and by set; the old one stays.
    const failing = WEB_ONLY.replace(`"deny": ["tag:web:22"]`, `"deny": ["tag:web:80"]`);
    await assert.rejects(manager.check(failing), PolicyInvalidError);
    await assert.rejects(manager.set(failing), /tests failed/);
    await assert.rejects(
      manager.set(`{ "acls": [ { "action": "accept", "src": ["tag:nope"], "dst": ["*:*"] } ] }`),
      /tag:nope/,
    );
    await assert.rejects(manager.set(`{ "acls": [ `), PolicyInvalidError);
    assert.equal((await manager.get()).policy, WEB_ONLY);
    assert.equal(await store.getPolicy(), WEB_ONLY);
  } finally {
    manager.close();
    await store.close();
  }
});

Deno.test("policy manager: node changes reach the engine and resync only affected nodes", async () => {
  const { store, state, manager, seen, laptop, web, register } = await setup("database");
  try {
    await manager.set(WEB_ONLY);
    const engine = seen.engine as PolicyEngine | null;
    seen.resynced.length = 0;
    const other = await register(3, ["tag:db"]);
    assert.deepEqual([...engine!.peersOf(other.id)], [], "tag:db is reachable by nobody");
    await state.setNodeTags(other.id, ["tag:web"]);
    assert.deepEqual([...engine!.peersOf(laptop.id)].sort(), [web.id, other.id].sort());
    assert.ok(seen.resynced.flat().includes(laptop.id), "the laptop learns of its new peer");
  } finally {
    manager.close();
    await store.close();
  }
});

Deno.test("policy manager: file mode reloads a good file and keeps the old policy on a bad one", async () => {
  const dir = await Deno.makeTempDir();
  const path = `${dir}/policy.hujson`;
  await Deno.writeTextFile(path, WEB_ONLY);
  const { store, manager, seen, laptop, web } = await setup("file", path);
  try {
    assert.ok(seen.engine);
    await assert.rejects(manager.set("{}"), /policy.mode: database/);

    await Deno.writeTextFile(
      path,
      `{ "acls": [ { "action": "accept", "src": ["tag:nope"], "dst": ["*:*"] } ] }`,
    );
    assert.equal(await manager.reloadFile("test"), false);
    assert.equal((await manager.get()).policy, WEB_ONLY);

    await Deno.writeTextFile(path, `{ "acls": [] }`);
    assert.equal(await manager.reloadFile("test"), true);
    const engine = seen.engine as PolicyEngine | null;
    assert.deepEqual([...engine!.peersOf(laptop.id)], [], "acls: [] denies all");
    assert.deepEqual(engine!.filterFor(web.id), []);
  } finally {
    manager.close();
    await store.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("policy manager: routes an autoApprover covers are approved", async () => {
  const { store, state, manager, web } = await setup("database");
  try {
    await manager.set(`{
      "tagOwners": { "tag:web": ["alice@"] },
      "acls": [{ "action": "accept", "src": ["*"], "dst": ["*:*"] }],
      "autoApprovers": { "routes": { "10.1.0.0/16": ["tag:web"] } },
    }`);
    state.applyReport(web.id, {
      hostinfo: { Hostname: "node2", RoutableIPs: ["10.1.2.0/24", "192.168.0.0/24"] },
    });
    // The approval is written to the store before it is in force: wait for it (a slow machine
    // may take a while; only a route never approved reaches the deadline).
    const deadline = Date.now() + 10_000;
    while (state.getNode(web.id)!.approvedRoutes.length === 0 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 10));
    }
    assert.deepEqual(state.getNode(web.id)!.approvedRoutes, ["10.1.2.0/24"]);
  } finally {
    manager.close();
    await store.close();
  }
});
