/**
 * BackfillNodeIPs (headscale's `nodes backfillips`): nodes made while only some prefixes were
 * configured get addresses in the others, addresses of unconfigured families are dropped, over
 * a real State and SQLite store, through the API over HTTP and through the CLI.
 */
import assert from "node:assert/strict";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { Code, ConnectError } from "@connectrpc/connect";
import { HeadscaleService } from "../gen/headscale/v1/headscale_pb.ts";
import type { CliIO } from "../lib/cli/command.ts";
import { runCli } from "../lib/cli/run.ts";
import type { Config } from "../lib/config/config.ts";
import { parseConfigText } from "../lib/config/load.ts";
import { silentLogger } from "../lib/log/log.ts";
import { parseIP, parsePrefix, prefixContains } from "../lib/net/ip.ts";
import type { Change } from "../lib/state/events.ts";
import { State } from "../lib/state/state.ts";
import { openStore, type Store } from "../lib/store/mod.ts";
import { startApiServer } from "./helpers/api_server.ts";

const V4 = "100.64.0.0/10";
const V6 = "fd7a:115c:a1e0::/48";
const base = parseConfigText("").config;

function configWith(v4: string, v6: string): Config {
  return { ...base, prefixes: { ...base.prefixes, v4, v6 } };
}

const hex = (n: number) => n.toString(16).padStart(64, "0");

function registration(n: number, userId: number) {
  return {
    machineKey: `mkey:${hex(n)}` as const,
    nodeKey: `nodekey:${hex(n + 1000)}` as const,
    hostname: `host-${n}`,
    hostinfo: { Hostname: `host-${n}` },
    userId,
    tags: [],
    authKeyId: null,
    method: "authkey" as const,
    ephemeral: false,
    expiry: null,
  };
}

interface Db {
  dir: string;
  path: string;
}

async function tempDb(): Promise<Db> {
  const dir = await Deno.makeTempDir({ prefix: "hs-backfill-" });
  return { dir, path: `${dir}/db.sqlite` };
}

async function openState(db: Db, config: Config): Promise<{ store: Store; state: State }> {
  const store = await openStore({
    type: "sqlite",
    sqlite: { path: db.path, writeAheadLog: false },
  });
  const state = await State.open({ store, log: silentLogger(), config });
  return { store, state };
}

/** Makes `count` nodes while the server runs with `config`, then closes it. */
async function seed(db: Db, config: Config, count: number): Promise<void> {
  const { store, state } = await openState(db, config);
  const user = await state.createUser({ name: "alice" });
  for (let i = 1; i <= count; i++) await state.registerNode(registration(i, user.id));
  await state.close();
  await store.close();
}

/** What the database holds after a fresh reopen: id → [ipv4, ipv6]. */
async function storedAddresses(db: Db): Promise<Map<number, [string | null, string | null]>> {
  const store = await openStore({
    type: "sqlite",
    sqlite: { path: db.path, writeAheadLog: false },
  });
  try {
    return new Map((await store.listNodes()).map((n) => [n.id, [n.ipv4, n.ipv6]]));
  } finally {
    await store.close();
  }
}

/** The API over HTTP, plus a POST with the API key. */
async function startApi(state: State, store: Store) {
  const api = await startApiServer(state, store);
  return {
    ...api,
    post: (path: string) =>
      fetch(api.base + path, { method: "POST", headers: { authorization: `Bearer ${api.key}` } }),
  };
}

/** The nodes named by node-updated events, in id order. */
function updatedIds(changes: readonly Change[]): number[] {
  return changes.flatMap((c) => c.kind === "node-updated" ? [c.nodeId] : []).sort((a, b) => a - b);
}

const inPrefix = (ip: string, prefix: string) => prefixContains(parsePrefix(prefix)!, parseIP(ip)!);

Deno.test("api backfill: v4-only nodes get distinct IPv6 addresses once v6 is configured", async () => {
  const db = await tempDb();
  try {
    await seed(db, configWith(V4, ""), 6);
    const before = await storedAddresses(db);
    assert.equal(before.size, 6);
    for (const [, [v4, v6]] of before) {
      assert.ok(v4 !== null && inPrefix(v4, V4));
      assert.equal(v6, null);
    }

    const { store, state } = await openState(db, configWith(V4, V6));
    const api = await startApi(state, store);
    const changes: Change[] = [];
    state.subscribe((cs) => changes.push(...cs));
    try {
      // Unconfirmed: refused, nothing written, nothing announced.
      const refused = await api.post("/api/v1/node/backfillips");
      assert.equal(refused.status, 400);
      assert.match((await refused.json()).message, /not confirmed/);
      const refusedFalse = await api.post("/api/v1/node/backfillips?confirmed=false");
      assert.equal(refusedFalse.status, 400);
      await refusedFalse.body?.cancel();
      assert.deepEqual(changes, []);
      assert.ok(state.listNodes().every((n) => n.ipv6 === null));
      assert.deepEqual(await storedAddresses(db), before);

      const res = await api.post("/api/v1/node/backfillips?confirmed=true");
      assert.equal(res.status, 200);
      const body = await res.json() as { changes: string[] };
      assert.equal(body.changes.length, 6);

      const nodes = state.listNodes();
      const v6s = nodes.map((n) => n.ipv6);
      assert.equal(new Set(v6s).size, 6, "every node has its own IPv6");
      for (const n of nodes) {
        assert.ok(n.ipv6 !== null && inPrefix(n.ipv6, V6), `${n.ipv6} in ${V6}`);
        assert.equal(n.ipv4, before.get(n.id)![0], "IPv4 unchanged");
        assert.ok(
          body.changes.includes(`assigned IPv6 "${n.ipv6}" to Node(${n.id}) "${n.hostname}"`),
          `change line for node ${n.id}: ${body.changes.join("; ")}`,
        );
      }
      // Connected clients hear about their new addresses through node-updated.
      assert.deepEqual(updatedIds(changes), nodes.map((n) => n.id));

      // A node registered afterwards gets an address nobody has.
      const late = await state.registerNode(registration(99, nodes[0].userId!));
      assert.ok(late.ipv6 !== null && !v6s.includes(late.ipv6));

      // Nothing left to do: a second run changes nothing.
      const again = await api.post("/api/v1/node/backfillips?confirmed=true");
      assert.deepEqual((await again.json()).changes, []);
    } finally {
      await api.close();
      await state.close();
      await store.close();
    }

    // Durable: a fresh process sees the same addresses.
    const after = await storedAddresses(db);
    const reopened = await openState(db, configWith(V4, V6));
    try {
      for (const n of reopened.state.listNodes()) {
        assert.deepEqual(after.get(n.id), [n.ipv4, n.ipv6]);
        assert.ok(n.ipv6 !== null);
        if (n.id <= 6) assert.equal(n.ipv4, before.get(n.id)![0]);
      }
    } finally {
      await reopened.store.close();
    }
  } finally {
    await Deno.remove(db.dir, { recursive: true });
  }
});

Deno.test("api backfill: a family no prefix is configured for is removed (gRPC)", async () => {
  const db = await tempDb();
  try {
    await seed(db, configWith(V4, V6), 3);
    const before = await storedAddresses(db);
    const { store, state } = await openState(db, configWith("", V6));
    const api = await startApi(state, store);
    try {
      const client = createClient(
        HeadscaleService,
        createConnectTransport({
          baseUrl: api.base,
          httpVersion: "1.1",
          interceptors: [(next) => (req) => {
            req.header.set("authorization", `Bearer ${api.key}`);
            return next(req);
          }],
        }),
      );
      const refused = await client.backfillNodeIPs({ confirmed: false }).then(
        () => null,
        (e) => ConnectError.from(e),
      );
      assert.equal(refused?.code, Code.InvalidArgument);
      assert.ok(state.listNodes().every((n) => n.ipv4 !== null));

      const { changes } = await client.backfillNodeIPs({ confirmed: true });
      assert.deepEqual(
        changes,
        [...before].map(([id, [v4]]) => `removing IPv4 "${v4}" from Node(${id}) "host-${id}"`),
      );
      for (const n of state.listNodes()) {
        assert.equal(n.ipv4, null);
        assert.equal(n.ipv6, before.get(n.id)![1], "IPv6 kept");
      }
    } finally {
      await api.close();
      await state.close();
      await store.close();
    }
    for (const [id, [v4, v6]] of await storedAddresses(db)) {
      assert.equal(v4, null);
      assert.equal(v6, before.get(id)![1]);
    }
  } finally {
    await Deno.remove(db.dir, { recursive: true });
  }
});

Deno.test("api backfill: registrations racing a backfill never share an address", async () => {
  const db = await tempDb();
  try {
    await seed(db, configWith(V4, ""), 20);
    const { store, state } = await openState(db, configWith(V4, V6));
    try {
      const user = state.getUserByName("alice")!;
      const backfill = state.backfillNodeIPs();
      const racing = Array.from(
        { length: 10 },
        (_, i) => state.registerNode(registration(100 + i, user.id)),
      );
      const [changes] = await Promise.all([backfill, ...racing]);
      assert.equal(changes.length, 20);
      const nodes = state.listNodes();
      assert.equal(nodes.length, 30);
      const v4s = nodes.map((n) => n.ipv4);
      const v6s = nodes.map((n) => n.ipv6);
      assert.ok(v6s.every((ip) => ip !== null));
      assert.equal(new Set(v6s).size, 30, "IPv6 addresses are unique");
      assert.equal(new Set(v4s).size, 30, "IPv4 addresses are unique");
    } finally {
      await state.close();
      await store.close();
    }
    const stored = await storedAddresses(db);
    assert.equal(new Set([...stored.values()].map(([, v6]) => v6)).size, 30);
  } finally {
    await Deno.remove(db.dir, { recursive: true });
  }
});

Deno.test("api backfill: an exhausted prefix fails before anything is written", async () => {
  const db = await tempDb();
  const tiny = "fd7a:115c:a1e0::/126"; // Three usable addresses for four nodes.
  try {
    await seed(db, configWith(V4, ""), 4);
    const { store, state } = await openState(db, configWith(V4, tiny));
    const api = await startApi(state, store);
    const changes: Change[] = [];
    state.subscribe((cs) => changes.push(...cs));
    try {
      const res = await api.post("/api/v1/node/backfillips?confirmed=true");
      assert.equal(res.status, 429);
      assert.match((await res.json()).message, /no free address/);
      assert.ok(state.listNodes().every((n) => n.ipv6 === null));
      assert.deepEqual(changes, []);
      // The addresses taken for the attempt were given back.
      await state.deleteNode(4);
      const ok = await api.post("/api/v1/node/backfillips?confirmed=true");
      assert.equal((await ok.json()).changes.length, 3);
    } finally {
      await api.close();
      await state.close();
      await store.close();
    }
  } finally {
    await Deno.remove(db.dir, { recursive: true });
  }
});

Deno.test("cli: nodes backfillips asks first on a terminal, then prints the changes", async () => {
  const db = await tempDb();
  try {
    await seed(db, configWith(V4, ""), 2);
    const { store, state } = await openState(db, configWith(V4, V6));
    const socket = `${db.dir}/headscale.sock`;
    const configPath = `${db.dir}/config.yaml`;
    await Deno.writeTextFile(configPath, `unix_socket: ${socket}\ncli:\n  timeout: 10s\n`);
    const server = await startApiServer(state, store, { socket });
    const run = async (args: string[], answers: string[], tty: boolean) => {
      const out: string[] = [];
      const err: string[] = [];
      const asked: string[] = [];
      const io: CliIO = {
        print: (t) => out.push(t),
        printError: (t) => err.push(t),
        ask: (q) => {
          asked.push(q);
          return Promise.resolve(answers.shift() ?? null);
        },
        stdinIsTerminal: tty,
        stdoutIsTerminal: false,
        env: {},
        now: () => new Date(),
      };
      const code = await runCli(["-c", configPath, ...args], io);
      return { code, out: out.join("\n"), err: err.join("\n"), asked };
    };
    try {
      const declined = await run(["nodes", "backfillips"], ["n"], true);
      assert.equal(declined.code, 0, declined.err);
      assert.equal(declined.asked.length, 1);
      assert.match(declined.asked[0], /assign\/remove IPs/);
      assert.ok(state.listNodes().every((n) => n.ipv6 === null), "declining changes nothing");

      const done = await run(["nodes", "backfillips", "--force", "-o", "json"], [], true);
      assert.equal(done.code, 0, done.err);
      assert.deepEqual(done.asked, []);
      const { changes } = JSON.parse(done.out);
      assert.equal(changes.length, 2);
      assert.ok(state.listNodes().every((n) => n.ipv6 !== null));
      for (const n of state.listNodes()) {
        assert.ok(changes.includes(`assigned IPv6 "${n.ipv6}" to Node(${n.id}) "${n.hostname}"`));
      }

      const human = await run(["nodes", "backfillips", "--force"], [], false);
      assert.equal(human.out, "Node IPs backfilled successfully");
    } finally {
      await server.close();
      await state.close();
      await store.close();
    }
  } finally {
    await Deno.remove(db.dir, { recursive: true });
  }
});
