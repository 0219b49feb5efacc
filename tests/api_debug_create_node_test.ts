/**
 * DebugCreateNode (headscale's `debug create-node`): a made-up machine parked under a
 * registration id, completed by `auth register` / RegisterNode, over a real State and store,
 * through the API over HTTP, and through the CLI.
 */
import assert from "node:assert/strict";
import { debugNodeHandler, newDebugRegistration } from "../lib/api/debug_registrations.ts";
import { registrationIdProblem } from "../lib/auth_requests/ids.ts";
import { AuthRequestRegistry } from "../lib/auth_requests/registry.ts";
import { parseInvocation } from "../lib/cli/args.ts";
import type { CliIO } from "../lib/cli/command.ts";
import { COMMANDS } from "../lib/cli/commands/mod.ts";
import { UsageError } from "../lib/cli/errors.ts";
import { runCli } from "../lib/cli/run.ts";
import { InvalidArgumentError } from "../lib/state/errors.ts";
import type { Change } from "../lib/state/events.ts";
import { State } from "../lib/state/state.ts";
import { type Store } from "../lib/store/mod.ts";
import { startApiServer } from "./helpers/api_server.ts";
import type { NodeRecord } from "../lib/store/types.ts";
import { openMemoryState } from "./helpers/memory_state.ts";

const KEY = "hskey-authreq-AbCdEfGhIjKlMnOpQrStUv_-";
const OTHER_KEY = "hskey-authreq-000000000000000000000000";

// deno-lint-ignore no-explicit-any
type Json = any; // Response bodies, checked field by field.

interface Api {
  base: string;
  key: string;
  state: State;
  store: Store;
  /** The registry the API parks debug nodes in (it holds no logins). */
  requests: AuthRequestRegistry;
  call(method: string, path: string, body?: unknown): Promise<{ status: number; json: Json }>;
  close(): Promise<void>;
}

/** The API over HTTP, with an auth-request registry of its own. */
async function startApi(): Promise<Api> {
  const { store, state } = await openMemoryState();
  const requests = new AuthRequestRegistry();
  const api = await startApiServer(state, store, { authRequests: requests });
  const { base, key } = api;
  return {
    base,
    key,
    state,
    store,
    requests,
    async call(method, path, body) {
      const res = await fetch(base + path, {
        method,
        headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      return { status: res.status, json: await res.json() };
    },
    async close() {
      await api.close();
      await state.close();
      await store.close();
    },
  };
}

Deno.test("api debug create-node: parks a node that auth register turns into a real one", async () => {
  const api = await startApi();
  const changes: Change[] = [];
  api.state.subscribe((cs) => changes.push(...cs));
  try {
    const alice = await api.state.createUser({ name: "alice" });
    const created = await api.call("POST", "/api/v1/debug/node", {
      user: "alice",
      key: KEY,
      name: "debug-box",
      routes: ["10.0.0.0/24", "192.168.1.0/24"],
    });
    assert.equal(created.status, 200, JSON.stringify(created.json));
    const echo = created.json.node;
    // Not registered yet: no id, no addresses, headscale's zero times.
    assert.equal(echo.id, "0");
    assert.equal(echo.name, "debug-box");
    assert.equal(echo.user.name, "alice");
    assert.deepEqual(echo.ipAddresses, []);
    assert.deepEqual(echo.availableRoutes, ["10.0.0.0/24", "192.168.1.0/24"]);
    assert.equal(echo.expiry, "0001-01-01T00:00:00Z");
    assert.match(echo.machineKey, /^mkey:[0-9a-f]{64}$/);
    assert.match(echo.nodeKey, /^nodekey:[0-9a-f]{64}$/);
    assert.equal(api.state.nodeCount, 0);
    assert.deepEqual(changes, []);
    assert.deepEqual(api.requests.list().map((r) => [r.id, r.kind, r.hostname]), [
      [KEY, "debug-node", "debug-box"],
    ]);

    // auth register completes it: the registry hands it to the debug-node kind.
    const registered = await api.call("POST", "/api/v1/auth/register", {
      user: "alice",
      authId: KEY,
    });
    assert.equal(registered.status, 200, JSON.stringify(registered.json));
    const node = registered.json.node;
    assert.equal(node.id, "1");
    assert.equal(node.name, "debug-box");
    assert.equal(node.givenName, "debug-box");
    assert.equal(node.machineKey, echo.machineKey);
    assert.equal(node.nodeKey, echo.nodeKey);
    assert.equal(node.user.name, "alice");
    assert.equal(node.registerMethod, "REGISTER_METHOD_CLI");
    assert.equal(node.ipAddresses.length, 2);
    assert.deepEqual(node.availableRoutes, ["10.0.0.0/24", "192.168.1.0/24"]);
    assert.deepEqual(api.requests.list(), []);
    const stored = await api.store.listNodes();
    assert.equal(stored.length, 1);
    assert.equal(stored[0].userId, alice.id);
    assert.deepEqual(stored[0].hostinfo?.RoutableIPs, ["10.0.0.0/24", "192.168.1.0/24"]);
    assert.deepEqual(changes, [{ kind: "node-added", nodeId: 1 }]);

    // The registration id is used up: the next attempt finds no request under it.
    const twice = await api.call("POST", "/api/v1/auth/register", { user: "alice", authId: KEY });
    assert.equal(twice.status, 404);
    assert.match(twice.json.message, new RegExp(`no pending login with auth id ${KEY}`));
    assert.equal(api.state.nodeCount, 1);
  } finally {
    await api.close();
  }
});

Deno.test("api debug create-node: nodes register (RegisterNode) completes it too; reject drops it", async () => {
  const api = await startApi();
  try {
    await api.state.createUser({ name: "bob" });
    for (const key of [KEY, OTHER_KEY]) {
      const r = await api.call("POST", "/api/v1/debug/node", { user: "bob", key, name: "box" });
      assert.equal(r.status, 200, JSON.stringify(r.json));
    }
    const registered = await api.call(
      "POST",
      `/api/v1/node/register?user=bob&key=${encodeURIComponent(KEY)}`,
    );
    assert.equal(registered.status, 200, JSON.stringify(registered.json));
    assert.equal(registered.json.node.givenName, "box");

    // A made-up machine has no node to re-authenticate: approve is refused and keeps it.
    const approved = await api.call("POST", "/api/v1/auth/approve", { authId: OTHER_KEY });
    assert.equal(approved.status, 400);
    assert.match(approved.json.message, /no node yet/);
    const rejected = await api.call("POST", "/api/v1/auth/reject", { authId: OTHER_KEY });
    assert.equal(rejected.status, 200);
    const afterReject = await api.call("POST", "/api/v1/auth/register", {
      user: "bob",
      authId: OTHER_KEY,
    });
    assert.equal(afterReject.status, 404);
    assert.deepEqual(api.state.listNodes().map((n) => n.givenName), ["box"]);
  } finally {
    await api.close();
  }
});

Deno.test("api debug create-node: bad input is refused with a clear message, nothing parked", async () => {
  const api = await startApi();
  try {
    await api.state.createUser({ name: "carol" });
    const cases: [Record<string, unknown>, number, RegExp][] = [
      [{ key: KEY, name: "x" }, 400, /user is required/],
      [{ user: "nobody", key: KEY, name: "x" }, 404, /user nobody not found/],
      [{ user: "carol", name: "x" }, 400, /key .* is required/],
      [{ user: "carol", key: "mkey:abc", name: "x" }, 400, /hskey-authreq-/],
      [{ user: "carol", key: KEY + "x", name: "x" }, 400, /38 characters/],
      [{ user: "carol", key: KEY }, 400, /name is required/],
      [{ user: "carol", key: KEY, name: "two words" }, 400, /invalid name/],
      [{ user: "carol", key: KEY, name: "x", routes: ["10.0.0.0/33"] }, 400, /invalid route/],
      [{ user: "carol", key: KEY, name: "x", routes: ["10.0.0.1"] }, 400, /CIDR/],
    ];
    for (const [body, status, message] of cases) {
      const r = await api.call("POST", "/api/v1/debug/node", body);
      assert.equal(r.status, status, `${JSON.stringify(body)} → ${JSON.stringify(r.json)}`);
      assert.match(r.json.message, message, JSON.stringify(body));
    }
    assert.equal(api.requests.list().length, 0);
    // A user given by id works as well as by name.
    const byId = await api.call("POST", "/api/v1/debug/node", { user: "1", key: KEY, name: "x" });
    assert.equal(byId.status, 200);
    assert.equal(api.requests.list().length, 1);
  } finally {
    await api.close();
  }
});

Deno.test("api debug create-node: entries expire after 15 minutes and a failed registration keeps them", async () => {
  const neverCalled = {
    registerNode: () => Promise.reject(new Error("not expected")),
  };
  let clock = new Date("2026-01-01T00:00:00Z");
  const registry = new AuthRequestRegistry({ now: () => clock.getTime() });
  const debug = registry.kind("debug-node", debugNodeHandler(neverCalled));
  debug.open(newDebugRegistration({ key: KEY, name: "a", routes: [] }), { id: KEY });
  clock = new Date(clock.getTime() + 14 * 60_000);
  assert.ok(debug.get(KEY));
  clock = new Date(clock.getTime() + 2 * 60_000);
  assert.ok(!debug.get(KEY));

  const bounded = new AuthRequestRegistry({ maxEntries: 2 });
  const boundedDebug = bounded.kind("debug-node", debugNodeHandler(neverCalled));
  for (const key of [KEY, OTHER_KEY, "hskey-authreq-111111111111111111111111"]) {
    boundedDebug.open(newDebugRegistration({ key, name: "a", routes: [] }), { id: key });
  }
  assert.equal(bounded.list().length, 2);
  assert.ok(!boundedDebug.get(KEY), "the oldest entry went first");

  // A registration that fails leaves the entry for a retry; one that succeeds uses it up.
  const shared = new AuthRequestRegistry();
  let fail = true;
  const registeredFor: number[] = [];
  const sharedDebug = shared.kind(
    "debug-node",
    debugNodeHandler({
      registerNode: (input) => {
        if (fail) return Promise.reject(new InvalidArgumentError("database said no"));
        registeredFor.push(input.userId!);
        return Promise.resolve({ id: 7, hostname: input.hostname } as NodeRecord);
      },
    }),
  );
  sharedDebug.open(newDebugRegistration({ key: KEY, name: "box", routes: [] }), { id: KEY });
  await assert.rejects(shared.register(KEY, 3), /database said no/);
  assert.equal(
    sharedDebug.get(KEY)?.status,
    "pending",
    "the failed registration left the entry in place",
  );
  fail = false;
  assert.equal((await shared.register(KEY, 3)).id, 7);
  assert.deepEqual(registeredFor, [3]);
  assert.ok(!sharedDebug.get(KEY));
  await assert.rejects(shared.register(KEY, 3), /no pending login with auth id/);
});

Deno.test("api debug create-node: registration ids follow headscale's format", () => {
  assert.equal(registrationIdProblem(KEY), null);
  assert.equal(registrationIdProblem(`hskey-authreq-${"a".repeat(24)}`), null);
  assert.notEqual(registrationIdProblem(`hskey-authreq-${"a".repeat(23)}`), null);
  assert.notEqual(registrationIdProblem(`hskey-auth-${"a".repeat(27)}`), null);
  assert.notEqual(registrationIdProblem(`hskey-authreq-${"a".repeat(23)} `), null);
  assert.notEqual(registrationIdProblem(""), null);
});

Deno.test("cli args: debug create-node takes headscale's flags, all but --route required", () => {
  const inv = parseInvocation(
    [
      "debug",
      "create-node",
      "-u",
      "alice",
      "-k",
      KEY,
      "--name",
      "box",
      "-r",
      "10.0.0.0/8,fd00::/8",
      "--route",
      "192.168.0.0/16",
    ],
    COMMANDS,
  );
  assert.equal(inv.kind, "run");
  if (inv.kind !== "run") return;
  assert.deepEqual(inv.path, ["debug", "create-node"]);
  assert.equal(inv.options.string("user"), "alice");
  assert.equal(inv.options.string("key"), KEY);
  assert.equal(inv.options.string("name"), "box");
  assert.deepEqual(inv.options.list("route"), ["10.0.0.0/8", "fd00::/8", "192.168.0.0/16"]);
  for (
    const missing of [
      ["-k", KEY, "--name", "box"],
      ["-u", "alice", "--name", "box"],
      ["-u", "alice", "-k", KEY],
    ]
  ) {
    assert.throws(
      () => parseInvocation(["debug", "create-node", ...missing], COMMANDS),
      (e) => e instanceof UsageError && /required flag --(user|key|name)/.test(e.message),
    );
  }
});

Deno.test("cli: debug create-node, then auth register, over the unix socket", async () => {
  const dir = await Deno.makeTempDir({ prefix: "hs-debug-node-" });
  const socket = `${dir}/headscale.sock`;
  const configPath = `${dir}/config.yaml`;
  await Deno.writeTextFile(configPath, `unix_socket: ${socket}\ncli:\n  timeout: 10s\n`);
  const { store, state } = await openMemoryState();
  const server = await startApiServer(state, store, { socket });
  const run = async (args: string[]) => {
    const out: string[] = [];
    const err: string[] = [];
    const io: CliIO = {
      print: (t) => out.push(t),
      printError: (t) => err.push(t),
      ask: () => Promise.resolve(null),
      stdinIsTerminal: false,
      stdoutIsTerminal: false,
      env: {},
      now: () => new Date(),
    };
    const code = await runCli(["-c", configPath, ...args], io);
    return { code, out: out.join("\n"), err: err.join("\n") };
  };
  try {
    await state.createUser({ name: "alice" });
    const bad = await run(["debug", "create-node", "-u", "alice", "-k", "nope", "--name", "b"]);
    assert.equal(bad.code, 1);
    assert.match(bad.err, /parsing machine key: invalid registration key "nope"/);

    const created = await run(["debug", "create-node", "-u", "alice", "-k", KEY, "--name", "box"]);
    assert.equal(created.code, 0, created.err);
    assert.equal(created.out, "Node created");
    const again = await run([
      "debug",
      "create-node",
      "-u",
      "alice",
      "-k",
      OTHER_KEY,
      "--name",
      "box",
      "-r",
      "10.1.0.0/16",
      "-o",
      "json",
    ]);
    assert.equal(again.code, 0, again.err);
    const echo = JSON.parse(again.out);
    assert.equal(echo.name, "box");
    assert.deepEqual(echo.availableRoutes, ["10.1.0.0/16"]);

    const unknownUser = await run(["debug", "create-node", "-u", "zed", "-k", KEY, "--name", "b"]);
    assert.equal(unknownUser.code, 1);
    assert.match(unknownUser.err, /creating node: user zed not found/);

    const registered = await run(["auth", "register", "--auth-id", KEY, "-u", "alice"]);
    assert.equal(registered.code, 0, registered.err);
    assert.equal(registered.out, "Node box registered");
    const second = await run(["auth", "register", "--auth-id", OTHER_KEY, "-u", "alice"]);
    assert.equal(second.code, 0, second.err);
    assert.deepEqual(state.listNodes().map((n) => n.givenName), ["box", "box-1"]);
  } finally {
    await server.close();
    await state.close();
    await store.close();
    await Deno.remove(dir, { recursive: true });
  }
});
