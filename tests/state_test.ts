import assert from "node:assert/strict";
import { openStore } from "../lib/store/mod.ts";
import { State } from "../lib/state/state.ts";
import type { Change } from "../lib/state/events.ts";
import {
  ConflictError,
  InvalidArgumentError,
  KeyRejectedError,
  NotFoundError,
} from "../lib/state/errors.ts";
import { parseConfigText } from "../lib/config/load.ts";
import { silentLogger } from "../lib/log/log.ts";
import { openMemoryState } from "./helpers/memory_state.ts";

const config = parseConfigText("").config;

async function openState(now?: () => Date) {
  const { store, state } = await openMemoryState({ config, now });
  const changes: Change[] = [];
  state.subscribe((cs) => changes.push(...cs));
  return { store, state, changes };
}

const hex = (n: number) => n.toString(16).padStart(64, "0");

function registration(
  n: number,
  userId: number | null,
  extra: Partial<Parameters<State["registerNode"]>[0]> = {},
) {
  return {
    machineKey: `mkey:${hex(n)}` as const,
    nodeKey: `nodekey:${hex(n)}` as const,
    hostname: `Host ${n}`,
    hostinfo: { Hostname: `Host ${n}` },
    userId,
    tags: [],
    authKeyId: null,
    method: "authkey" as const,
    ephemeral: false,
    expiry: null,
    ...extra,
  };
}

Deno.test("state: users are validated, unique, and survive a reload from the store", async () => {
  const { store, state } = await openState();
  const alice = await state.createUser({ name: "alice", email: "alice@example.com" });
  await assert.rejects(state.createUser({ name: "alice" }), ConflictError);
  await assert.rejects(state.createUser({ name: "bad name!" }), InvalidArgumentError);
  await state.renameUser(alice.id, "alice2");
  const reloaded = await State.open({ store, log: silentLogger(), config });
  assert.deepEqual(reloaded.listUsers().map((u) => u.name), ["alice2"]);
  await assert.rejects(state.renameUser(999, "x"), NotFoundError);
  await store.close();
});

Deno.test("state: pre-auth keys are single-use unless reusable, and expired keys are refused", async () => {
  let clock = new Date("2026-01-01T00:00:00Z");
  const { store, state } = await openState(() => clock);
  const user = await state.createUser({ name: "bob" });
  const once = await state.createPreAuthKey({
    userId: user.id,
    reusable: false,
    ephemeral: false,
    expiration: new Date("2026-01-02T00:00:00Z"),
    tags: [],
  });
  const key = await state.checkPreAuthKey(once.key);
  await state.registerNode(registration(1, user.id, { authKeyId: key.id }));
  await assert.rejects(state.checkPreAuthKey(once.key), /already used/);
  const again = await State.open({ store, log: silentLogger(), config, now: () => clock });
  await assert.rejects(again.checkPreAuthKey(once.key), /already used/, "used flag is durable");

  const reusable = await state.createPreAuthKey({
    userId: user.id,
    reusable: true,
    ephemeral: false,
    expiration: new Date("2026-01-02T00:00:00Z"),
    tags: [],
  });
  await state.registerNode(registration(2, user.id, { authKeyId: reusable.record.id }));
  await state.checkPreAuthKey(reusable.key);
  clock = new Date("2026-01-03T00:00:00Z");
  await assert.rejects(state.checkPreAuthKey(reusable.key), /expired/);
  await assert.rejects(
    state.checkPreAuthKey("hskey-auth-000000000000-" + "0".repeat(64)),
    KeyRejectedError,
  );
  await assert.rejects(state.checkPreAuthKey("garbage"), /invalid auth key/);
  await store.close();
});

Deno.test("state: a machine that registers again keeps its id and addresses", async () => {
  const { store, state, changes } = await openState();
  const user = await state.createUser({ name: "carol" });
  const first = await state.registerNode(registration(1, user.id));
  assert.equal(first.givenName, "host-1");
  assert.equal(first.ipv4, "100.64.0.1");
  const again = await state.registerNode({
    ...registration(1, user.id),
    nodeKey: `nodekey:${hex(77)}`,
  });
  assert.equal(again.id, first.id);
  assert.equal(again.ipv4, first.ipv4);
  assert.equal(again.ipv6, first.ipv6);
  assert.equal(state.nodeByNodeKey(`nodekey:${hex(77)}`)?.id, first.id);
  assert.equal(state.nodeByNodeKey(`nodekey:${hex(1)}`), undefined);
  assert.deepEqual(changes.map((c) => c.kind), ["node-added", "node-updated"]);
  // Another machine cannot claim this node key.
  await assert.rejects(
    state.registerNode({ ...registration(2, user.id), nodeKey: `nodekey:${hex(77)}` }),
    ConflictError,
  );
  await store.close();
});

Deno.test("state: concurrent registrations never share an address or a name", async () => {
  const { store, state } = await openState();
  const user = await state.createUser({ name: "dave" });
  const nodes = await Promise.all(
    Array.from(
      { length: 50 },
      (_, i) => state.registerNode({ ...registration(i + 1, user.id), hostname: "same" }),
    ),
  );
  assert.equal(new Set(nodes.map((n) => n.ipv4)).size, 50);
  assert.equal(new Set(nodes.map((n) => n.ipv6)).size, 50);
  assert.equal(new Set(nodes.map((n) => n.givenName)).size, 50);
  assert.equal((await store.listNodes()).length, 50);
  await store.close();
});

Deno.test("state: tags own a node; rename, routes and delete announce changes", async () => {
  const { store, state, changes } = await openState();
  const user = await state.createUser({ name: "erin" });
  const node = await state.registerNode(registration(1, user.id));
  const tagged = await state.setNodeTags(node.id, ["tag:server", "tag:server"]);
  assert.deepEqual(tagged.tags, ["tag:server"]);
  assert.equal(tagged.userId, null);
  await assert.rejects(state.setNodeTags(node.id, ["server"]), /invalid tag/);
  await assert.rejects(state.renameNode(node.id, "Not Valid"), InvalidArgumentError);
  await state.renameNode(node.id, "web");
  await assert.rejects(state.setApprovedRoutes(node.id, ["10.0.0.0/33"]), InvalidArgumentError);
  await state.setApprovedRoutes(node.id, ["10.0.0.0/24"]);
  await assert.rejects(state.deleteUser(user.id + 1), NotFoundError);
  await state.deleteNode(node.id);
  assert.equal(state.getNode(node.id), undefined);
  assert.deepEqual(
    changes.map((c) => c.kind),
    ["node-added", "node-updated", "node-updated", "node-updated", "node-removed"],
  );
  assert.equal((await store.listNodes()).length, 0);
  await store.close();
});

Deno.test("state: a user who owns nodes cannot be deleted", async () => {
  const { store, state } = await openState();
  const user = await state.createUser({ name: "frank" });
  const node = await state.registerNode(registration(1, user.id));
  await assert.rejects(state.deleteUser(user.id), /still owns nodes/);
  await state.deleteNode(node.id);
  await state.deleteUser(user.id);
  assert.equal(state.listUsers().length, 0);
  await store.close();
});

Deno.test("state: reports patch peers for endpoints, and update them for hostname changes", async () => {
  const { store, state, changes } = await openState();
  const user = await state.createUser({ name: "gina" });
  const node = await state.registerNode(registration(1, user.id));
  changes.length = 0;
  state.applyReport(node.id, { endpoints: ["1.2.3.4:41641"], discoKey: `discokey:${hex(5)}` });
  state.applyReport(node.id, { endpoints: ["1.2.3.4:41641"] }); // unchanged: no event
  state.applyReport(node.id, { hostinfo: { Hostname: "Host 1", NetInfo: { PreferredDERP: 999 } } });
  state.applyReport(node.id, {
    hostinfo: { Hostname: "renamed", NetInfo: { PreferredDERP: 999 } },
  });
  assert.deepEqual(changes, [
    {
      kind: "node-patched",
      nodeId: node.id,
      patch: { endpoints: ["1.2.3.4:41641"], discoKey: `discokey:${hex(5)}` },
    },
    { kind: "node-patched", nodeId: node.id, patch: { homeDerp: 999 } },
    { kind: "node-updated", nodeId: node.id },
  ]);
  await state.flush();
  const [saved] = await store.listNodes();
  assert.deepEqual(saved.endpoints, ["1.2.3.4:41641"]);
  assert.equal(saved.hostname, "renamed");
  await store.close();
});

Deno.test("state: API keys verify until expired or deleted", async () => {
  const { store, state } = await openState();
  const { record, key } = await state.createApiKey(null);
  assert.ok(await state.checkApiKey(key));
  assert.ok(!(await state.checkApiKey(key.slice(0, -1) + (key.endsWith("a") ? "b" : "a"))));
  await state.expireApiKey(record.id);
  assert.ok(!(await state.checkApiKey(key)));
  const second = await state.createApiKey(null);
  assert.ok(await state.checkApiKey(second.key));
  await state.deleteApiKey(second.record.id);
  assert.ok(!(await state.checkApiKey(second.key)));
  await store.close();
});

/** The store with saveNode held until `release()`: lets a test act while a node write is in flight. */
function heldSaves(store: Awaited<ReturnType<typeof openStore>>) {
  let gate: PromiseWithResolvers<void> | null = null;
  const held = new Proxy(store, {
    get(target, key) {
      const value = Reflect.get(target, key);
      if (typeof value !== "function") return value;
      if (key !== "saveNode") return value.bind(target);
      return async (...args: Parameters<typeof store.saveNode>) => {
        if (gate) await gate.promise;
        return await target.saveNode(...args);
      };
    },
  });
  return {
    held,
    hold: () => gate = Promise.withResolvers<void>(),
    release: () => gate?.resolve(),
  };
}

Deno.test("state: edits of one node in flight together all land, and a report meanwhile is kept", async () => {
  const { store } = await openState();
  const saves = heldSaves(store);
  const state = await State.open({ store: saves.held, log: silentLogger(), config });
  const user = await state.createUser({ name: "gail" });
  const node = await state.registerNode(registration(1, user.id));

  saves.hold();
  const renamed = state.renameNode(node.id, "web");
  const routed = state.setApprovedRoutes(node.id, ["10.0.0.0/24"]);
  await new Promise((r) => setTimeout(r, 0)); // the first write is now waiting in the store
  state.applyReport(node.id, {
    endpoints: ["192.0.2.1:41641"],
    hostinfo: { Hostname: "Host 1", OS: "linux" },
  });
  saves.release();
  await Promise.all([renamed, routed]);

  const now = state.getNode(node.id);
  assert.equal(now?.givenName, "web");
  assert.deepEqual(now?.approvedRoutes, ["10.0.0.0/24"]);
  assert.deepEqual(now?.endpoints, ["192.0.2.1:41641"]);
  assert.equal(now?.hostinfo?.OS, "linux");
  await state.flush();
  const reloaded = await State.open({ store, log: silentLogger(), config });
  const stored = reloaded.getNode(node.id);
  assert.equal(stored?.givenName, "web");
  assert.deepEqual(stored?.approvedRoutes, ["10.0.0.0/24"]);
  assert.deepEqual(stored?.endpoints, ["192.0.2.1:41641"]);
  await store.close();
});

Deno.test("state: a delete behind an edit in flight removes the node for good", async () => {
  const { store } = await openState();
  const saves = heldSaves(store);
  const state = await State.open({ store: saves.held, log: silentLogger(), config });
  const user = await state.createUser({ name: "hal" });
  const node = await state.registerNode(registration(1, user.id));

  saves.hold();
  const renamed = state.renameNode(node.id, "web");
  const deleted = state.deleteNode(node.id);
  await new Promise((r) => setTimeout(r, 0));
  saves.release();
  await Promise.all([renamed, deleted]);
  await assert.rejects(state.deleteNode(node.id), NotFoundError);

  assert.equal(state.getNode(node.id), undefined);
  assert.deepEqual(await store.listNodes(), []);
  await store.close();
});

Deno.test("state: onlineCount follows map streams (two on one node, closes, a delete)", async () => {
  const { store, state } = await openState();
  const user = await state.createUser({ name: "olive" });
  const a = await state.registerNode(registration(1, user.id));
  const b = await state.registerNode(registration(2, user.id));
  await state.registerNode(registration(3, user.id));
  const counted = () => state.listNodes().filter((n) => state.isOnline(n.id)).length;
  assert.equal(state.onlineCount, 0);
  state.streamOpened(a.id);
  state.streamOpened(a.id); // a second stream of the same node (a reconnect before the close)
  state.streamOpened(b.id);
  assert.equal(state.onlineCount, 2);
  state.streamClosed(a.id);
  assert.equal(state.onlineCount, 2, "a still has a stream");
  state.streamClosed(a.id);
  assert.equal(state.onlineCount, 1);
  assert.equal(state.onlineCount, counted());
  await state.deleteNode(b.id);
  assert.equal(state.onlineCount, 0, "a deleted node is not counted");
  assert.equal(state.nodeCount, 2);
  await store.close();
});
