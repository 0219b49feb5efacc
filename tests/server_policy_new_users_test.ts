import assert from "node:assert/strict";
import { PolicyManager } from "../lib/policy_manager/manager.ts";
import type { PolicyEngine } from "../lib/policy/mod.ts";
import { parseConfigText } from "../lib/config/load.ts";
import { silentLogger } from "../lib/log/log.ts";
import { openMemoryState } from "./helpers/memory_state.ts";

const hex = (n: number) => n.toString(16).padStart(64, "0");

Deno.test("policy manager: users created after the server started are known to the policy", async () => {
  const config = parseConfigText(`policy:\n  mode: database\n`).config;
  const { store, state } = await openMemoryState({ config });
  const manager = await PolicyManager.open({ config, store, state, log: silentLogger() });
  try {
    let engine: PolicyEngine | null = null;
    const resynced: number[] = [];
    manager.attach({ setPolicy: (e) => engine = e });
    state.subscribe((changes) => resynced.push(...manager.apply(changes)));
    // Users appear only now, as through the API on a running server.
    const alice = await state.createUser({ name: "alice" });
    const bob = await state.createUser({ name: "bob" });
    await manager.set(
      `{ "acls": [{ "action": "accept", "src": ["alice@"], "dst": ["bob@:80"] }] }`,
    );
    const carol = await state.createUser({ name: "carol" });
    const register = (n: number, userId: number) =>
      state.registerNode({
        machineKey: `mkey:${hex(n)}`,
        nodeKey: `nodekey:${hex(n)}`,
        hostname: `node${n}`,
        hostinfo: { Hostname: `node${n}` },
        userId,
        tags: [],
        authKeyId: null,
        method: "cli",
        ephemeral: false,
        expiry: null,
      });
    const a = await register(1, alice.id);
    const b = await register(2, bob.id);
    const c = await register(3, carol.id);
    const live = engine as PolicyEngine | null;
    assert.ok(live);
    assert.deepEqual([...live.peersOf(a.id)], [b.id]);
    assert.deepEqual([...live.peersOf(b.id)], [a.id]);
    assert.deepEqual([...live.peersOf(c.id)], []);
    assert.ok(resynced.includes(a.id), "alice's node learns of bob's");
    const ports = live.filterFor(b.id).flatMap((r) => r.DstPorts ?? []).map((d) => d.Ports.First);
    assert.deepEqual([...new Set(ports)], [80]);

    // A policy naming a user created after the last policy change resolves too.
    await manager.set(
      `{ "acls": [{ "action": "accept", "src": ["carol@"], "dst": ["bob@:22"] }] }`,
    );
    assert.deepEqual([...live.peersOf(c.id)], [b.id]);
  } finally {
    manager.close();
    await store.close();
  }
});
