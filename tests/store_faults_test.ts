/**
 * Writes that the database refuses are refused to the caller too, and change nothing: SQLite
 * faults injected in-process (`PRAGMA max_page_count` makes SQLite report a full database,
 * `PRAGMA query_only` a read-only one), through the store, the state, the API and the control
 * protocol. The same faults from a real full disk and a read-only file are in
 * fault_server_test.ts (root only).
 */
import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { parseConfigText } from "../lib/config/load.ts";
import { silentLogger } from "../lib/log/log.ts";
import { UnavailableError } from "../lib/state/errors.ts";
import { State } from "../lib/state/state.ts";
import { openSqliteStore, type SqliteStore } from "../lib/store/sqlite.ts";
import { StoreUnavailableError } from "../lib/store/types.ts";
import { startApiServer } from "./helpers/api_server.ts";
import { randomKey, startTestControl } from "./helpers/control.ts";

/** A migrated file store and a second raw connection to the same file to inject faults with. */
async function openFileStore(dir: string): Promise<{ store: SqliteStore; path: string }> {
  const path = `${dir}/db.sqlite`;
  const store = openSqliteStore({ path, writeAheadLog: true });
  await store.migrate();
  return { store, path };
}

/** The store's own connection, to set PRAGMAs on it (they are per connection). */
function connectionOf(store: SqliteStore): DatabaseSync {
  return (store as unknown as { db: DatabaseSync }).db;
}

type Fault = "none" | "full" | "read-only";

/** Puts the store's connection into `fault`: SQLite itself then refuses writes. */
function inject(db: DatabaseSync, fault: Fault): void {
  db.exec(`PRAGMA query_only = ${fault === "read-only" ? 1 : 0}`);
  const pages = Number(
    (db.prepare("PRAGMA page_count").get() as { page_count: number }).page_count,
  );
  db.exec(`PRAGMA max_page_count = ${fault === "full" ? pages : 1_000_000_000}`);
}

const newUser = (name: string) => ({
  name,
  displayName: "",
  email: "",
  providerId: "",
  provider: "",
  profilePicUrl: "",
  createdAt: new Date(),
});

Deno.test("store sqlite: a full or read-only database refuses writes with the file and the cause, and recovers", async () => {
  const dir = await Deno.makeTempDir();
  const { store, path } = await openFileStore(dir);
  try {
    const db = connectionOf(store);
    const first = await store.insertUser(newUser("first"));
    // Fill the file's last free page so the next insert must grow it.
    for (let i = 0; i < 20; i++) await store.insertUser(newUser(`pad-${i}-${"x".repeat(50)}`));
    const before = await store.listUsers();

    inject(db, "full");
    let refused = 0;
    for (let i = 0; i < 30; i++) {
      try {
        await store.insertUser(newUser(`big-${i}-${"y".repeat(2000)}`));
      } catch (e) {
        assert.ok(e instanceof StoreUnavailableError, `got ${e}`);
        assert.equal(e.fault, "full");
        assert.ok(e.message.startsWith(`the SQLite database ${path} is full`), e.message);
        refused++;
      }
    }
    assert.ok(refused > 0, "max_page_count must make some insert fail");

    inject(db, "read-only");
    await assert.rejects(
      store.insertUser(newUser("while-read-only")),
      (e) =>
        e instanceof StoreUnavailableError && e.fault === "read-only" && e.message.includes(path),
    );
    await assert.rejects(store.updateUser({ ...first, name: "renamed" }), StoreUnavailableError);
    await assert.rejects(store.deleteUser(first.id), StoreUnavailableError);
    await assert.rejects(store.setPolicy("{}"), StoreUnavailableError);
    await assert.rejects(store.checkWritable(), StoreUnavailableError);

    inject(db, "none");
    await store.checkWritable();
    const accepted = (await store.listUsers()).filter((u) => !before.some((b) => b.id === u.id));
    assert.ok(accepted.every((u) => u.name.startsWith("big-")), "only acknowledged inserts exist");
    const after = await store.insertUser(newUser("after"));
    const highest = Math.max(...(await store.listUsers()).map((u) => u.id));
    assert.equal(after.id, highest, "a new id follows every stored one");
    assert.equal((await store.listUsers()).find((u) => u.id === first.id)?.name, "first");
  } finally {
    await store.close();
    await Deno.remove(dir, { recursive: true });
  }
});

const config = parseConfigText(`tuning:
  node_store_batch_timeout: 20ms
`).config;

const hex = (n: number) => n.toString(16).padStart(64, "0");

Deno.test("state and API: a refused write is 503 naming the database, memory stays as the database has it", async () => {
  const dir = await Deno.makeTempDir();
  const { store, path } = await openFileStore(dir);
  const state = await State.open({ store, log: silentLogger(), config });
  const api = await startApiServer(state, store);
  try {
    const db = connectionOf(store);
    const auth = { authorization: `Bearer ${api.key}`, "content-type": "application/json" };
    const alice = await state.createUser({ name: "alice" });
    const keysBefore = state.listApiKeys().length;

    inject(db, "read-only");
    await assert.rejects(
      state.createUser({ name: "bob" }),
      (e) => e instanceof UnavailableError && e.message.includes(`the SQLite database ${path}`),
    );
    for (
      const [method, route, body] of [
        ["POST", "/api/v1/user", { name: "carol" }],
        ["POST", "/api/v1/apikey", {}],
        ["POST", "/api/v1/preauthkey", { user: String(alice.id), reusable: true }],
        ["POST", `/api/v1/user/${alice.id}/rename/alicia`, undefined],
      ] as const
    ) {
      const res = await fetch(`${api.base}${route}`, {
        method,
        headers: auth,
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      const json = await res.json();
      assert.equal(res.status, 503, `${route}: ${JSON.stringify(json)}`);
      assert.equal(json.code, 14, "gRPC Unavailable");
      assert.match(json.message, /^database unavailable: the SQLite database .* is read-only/);
    }
    assert.deepEqual(state.listUsers().map((u) => u.name), ["alice"]);
    assert.equal(state.listApiKeys().length, keysBefore);
    assert.equal(state.listPreAuthKeys().length, 0);

    inject(db, "none");
    const res = await fetch(`${api.base}/api/v1/user`, {
      method: "POST",
      headers: auth,
      body: JSON.stringify({ name: "carol" }),
    });
    assert.equal(res.status, 200, "writes succeed again without a restart");
    const fresh = await State.open({ store, log: silentLogger(), config });
    assert.deepEqual(fresh.listUsers().map((u) => u.name), ["alice", "carol"]);
  } finally {
    await api.close();
    await state.close();
    await store.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("state: a batch of node updates the database refused is retried, not dropped", async () => {
  const dir = await Deno.makeTempDir();
  const { store } = await openFileStore(dir);
  const lines: string[] = [];
  const log = silentLogger();
  const recording = Object.assign(Object.create(log), {
    error: (msg: string) => lines.push(`error ${msg}`),
    info: (msg: string) => lines.push(`info ${msg}`),
  });
  const state = await State.open({ store, log: recording, config });
  try {
    const db = connectionOf(store);
    const user = await state.createUser({ name: "u" });
    const node = await state.registerNode({
      machineKey: `mkey:${hex(1)}`,
      nodeKey: `nodekey:${hex(1)}`,
      hostname: "n1",
      hostinfo: null,
      userId: user.id,
      tags: [],
      authKeyId: null,
      method: "cli",
      ephemeral: false,
      expiry: null,
    });
    inject(db, "read-only");
    state.applyReport(node.id, { endpoints: ["192.0.2.1:41641"], discoKey: `discokey:${hex(9)}` });
    await state.flush();
    assert.equal(state.unwrittenNodeCount, 1, "the refused batch is kept");
    assert.ok(
      lines.some((l) => l.startsWith("error writing node updates failed")),
      lines.join("\n"),
    );

    inject(db, "none");
    // The retry timer (doubling from 20 ms) writes it without another report.
    const deadline = Date.now() + 5_000;
    while (state.unwrittenNodeCount > 0 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 20));
    }
    await state.flush();
    assert.equal(state.unwrittenNodeCount, 0);
    assert.ok(lines.includes("info node updates written again"), lines.join("\n"));
    const stored = (await store.listNodes()).find((n) => n.id === node.id);
    assert.deepEqual(stored?.endpoints, ["192.0.2.1:41641"]);
    assert.equal(stored?.discoKey, `discokey:${hex(9)}`);
  } finally {
    await state.close();
    await store.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("store sqlite: a new database file and its WAL are readable by the owner only", async () => {
  const dir = await Deno.makeTempDir();
  const { store, path } = await openFileStore(dir);
  try {
    await store.insertUser(newUser("someone"));
    for (const file of [path, `${path}-wal`]) {
      const mode = (await Deno.stat(file)).mode! & 0o777;
      assert.equal(mode.toString(8), "600", file);
    }
  } finally {
    await store.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("control: a registration the database refuses answers 503 naming the cause, and registers nothing", async () => {
  const t = await startTestControl();
  try {
    const alice = await t.user("alice");
    const key = await t.authKey({ user: alice, reusable: true });
    const db = connectionOf(t.store as SqliteStore);
    inject(db, "read-only");
    const machine = randomKey("mkey:");
    const reply = await t.connect(machine).register({
      Version: 130,
      NodeKey: randomKey("nodekey:"),
      Auth: { AuthKey: key },
      Hostinfo: { Hostname: "laptop" },
    });
    assert.equal(reply.status, 503, reply.text);
    assert.match(reply.text, /^database unavailable: the SQLite database .* is read-only/);
    assert.equal(t.state.nodeByMachineKey(machine), undefined);

    inject(db, "none");
    const again = await t.connect(machine).register({
      Version: 130,
      NodeKey: randomKey("nodekey:"),
      Auth: { AuthKey: key },
      Hostinfo: { Hostname: "laptop" },
    });
    assert.equal(again.status, 200, "the client's retry succeeds once the database is back");
    assert.ok(t.state.nodeByMachineKey(machine));
  } finally {
    await t.close();
  }
});
