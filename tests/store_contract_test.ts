/**
 * One behaviour contract for every Store backend, run here against SQLite and (when
 * HEADSCALE_TEST_POSTGRES_URL is set) PostgreSQL. Every test gets a fresh database: a new SQLite
 * file, or a new PostgreSQL schema that is dropped afterwards.
 */
import assert from "node:assert/strict";
import postgres from "postgres";
import { LATEST_VERSION, openStore, type StoreConfig } from "../lib/store/mod.ts";
import { type Migration, MIGRATIONS } from "../lib/store/migrations.ts";
import {
  type NewApiKey,
  type NewNode,
  type NewPreAuthKey,
  type NewUser,
  type NodeRecord,
  type Store,
  StoreConflictError,
  StoreNotFoundError,
  StoreVersionError,
} from "../lib/store/types.ts";

/** A fresh database for one test. */
export interface StoreFixture {
  /** Opens (and migrates) the fixture's database; call again to reopen the same data. */
  open(migrations?: readonly Migration[]): Promise<Store>;
  /** Runs SQL on the database directly, bypassing the store. */
  exec(sql: string): Promise<void>;
  /** Closes every store it opened and removes the database. */
  dispose(): Promise<void>;
}

export function storeContract(
  name: string,
  makeStore: () => Promise<StoreFixture>,
  options: { ignore?: string } = {},
): void {
  const test = (title: string, fn: (fx: StoreFixture, store: Store) => Promise<void>) => {
    Deno.test({
      name: `store ${name}: ${title}${options.ignore ? ` (${options.ignore})` : ""}`,
      ignore: options.ignore !== undefined,
      async fn() {
        const fx = await makeStore();
        try {
          await fn(fx, await fx.open());
        } finally {
          await fx.dispose();
        }
      },
    });
  };

  test("users: insert, list, update, delete", async (_fx, store) => {
    assert.deepEqual(await store.listUsers(), []);
    const alice = await store.insertUser(newUser("alice"));
    const bob = await store.insertUser({
      ...newUser("bob"),
      provider: "oidc",
      providerId: "sub-1",
    });
    assert.ok(alice.id > 0 && bob.id > alice.id);
    assert.deepEqual(alice, { ...newUser("alice"), id: alice.id });
    assert.deepEqual(await store.listUsers(), [alice, bob]);

    const renamed = { ...alice, name: "alice2", displayName: "Alice Ünïcode ✓", email: "a@b.c" };
    await store.updateUser(renamed);
    assert.deepEqual(await store.listUsers(), [renamed, bob]);

    await store.deleteUser(bob.id);
    assert.deepEqual(await store.listUsers(), [renamed]);
    await assert.rejects(store.updateUser({ ...bob }), StoreNotFoundError);
    await assert.rejects(store.deleteUser(bob.id), /user \d+ not found/);
  });

  test(
    "admin sessions: insert, list, delete; a duplicate prefix is a conflict",
    async (fx, store) => {
      const at = new Date("2026-01-02T03:04:05.678Z");
      const s = {
        prefix: "0123456789ab",
        hash: "hmac-sha256$salt$mac",
        identity: "oidc:https://idp.example/sub-1",
        displayName: "Alice Ünïcode",
        clientAddr: "192.0.2.7",
        createdAt: at,
        expiresAt: new Date(at.getTime() + 12 * 3600_000),
      };
      const saved = await store.insertAdminSession(s);
      assert.ok(saved.id > 0);
      assert.deepEqual(saved, { ...s, id: saved.id });
      await assert.rejects(store.insertAdminSession(s), StoreConflictError);
      const reopened = await fx.open();
      assert.deepEqual(await reopened.listAdminSessions(), [saved]);
      await store.deleteAdminSession(saved.id);
      assert.deepEqual(await store.listAdminSessions(), []);
      await assert.rejects(store.deleteAdminSession(saved.id), StoreNotFoundError);
    },
  );

  test("audit events: insert, newest first, limited", async (_fx, store) => {
    const base = Date.parse("2026-01-02T03:04:05.000Z");
    for (let i = 0; i < 5; i++) {
      await store.insertAuditEvent({
        at: new Date(base + i * 1000),
        actor: "link:admin",
        action: "user.create",
        target: `user:u${i}`,
        details: { name: `u${i}`, nested: { ok: true } },
        clientAddr: "::1",
      });
    }
    const newest = await store.listAuditEvents(3);
    assert.deepEqual(newest.map((e) => e.target), ["user:u4", "user:u3", "user:u2"]);
    assert.deepEqual(newest[0].details, { name: "u4", nested: { ok: true } });
    assert.equal(newest[0].at.getTime(), base + 4000);
    assert.equal((await store.listAuditEvents(100)).length, 5);
  });

  test("users: a duplicate name is a conflict that names the field", async (_fx, store) => {
    const alice = await store.insertUser(newUser("alice"));
    await assert.rejects(
      store.insertUser(newUser("alice")),
      (e) => e instanceof StoreConflictError && /user name "alice" already exists/.test(e.message),
    );
    const bob = await store.insertUser(newUser("bob"));
    await assert.rejects(store.updateUser({ ...bob, name: "alice" }), StoreConflictError);
    assert.deepEqual(await store.listUsers(), [alice, bob]);
  });

  test("nodes: save, replace, list, delete, every field round-trips", async (_fx, store) => {
    const user = await store.insertUser(newUser("alice"));
    const fresh = newNode(1, {
      userId: user.id,
      hostinfo: { Hostname: "laptop", OS: "linux", NetInfo: { PreferredDERP: 1 }, Services: [] },
      endpoints: ["192.0.2.1:41641", "[2001:db8::1]:41641"],
      approvedRoutes: ["10.0.0.0/8"],
      expiry: new Date("2031-05-06T07:08:09.123Z"),
      lastSeen: new Date("2024-02-29T23:59:59.999Z"),
      ephemeral: true,
    });
    const saved = await store.saveNode(fresh);
    assert.ok(saved.id > 0);
    assert.deepEqual(saved, { ...fresh, id: saved.id });
    const tagged = await store.saveNode(
      newNode(2, { userId: null, tags: ["tag:server", "tag:db"], ipv6: null, hostinfo: null }),
    );
    assert.deepEqual(await store.listNodes(), [saved, tagged]);

    const replaced: NodeRecord = {
      ...saved,
      nodeKey: "nodekey:" + "f".repeat(64),
      givenName: "renamed",
      ipv4: "100.64.9.9",
      expiry: null,
      registerMethod: "cli",
      updatedAt: new Date("2025-01-01T00:00:00.001Z"),
    };
    assert.deepEqual(await store.saveNode(replaced), replaced);
    assert.deepEqual(await store.listNodes(), [replaced, tagged]);

    await store.deleteNode(tagged.id);
    assert.deepEqual(await store.listNodes(), [replaced]);
    await assert.rejects(store.deleteNode(tagged.id), StoreNotFoundError);
    await assert.rejects(store.saveNode({ ...tagged }), /node \d+ not found/);
    assert.deepEqual(await store.listNodes(), [replaced]);
  });

  test("nodes: each unique field conflicts with a message naming it", async (_fx, store) => {
    const user = await store.insertUser(newUser("alice"));
    const first = await store.saveNode(newNode(1, { userId: user.id }));
    const clashes: Array<[Partial<NewNode>, RegExp]> = [
      [{ machineKey: first.machineKey }, /machine key mkey:0+1 already in use/],
      [{ nodeKey: first.nodeKey }, /node key nodekey:0+1 already in use/],
      [{ ipv4: first.ipv4 }, /ipv4 100\.64\.0\.1 already in use/],
      [{ ipv6: first.ipv6 }, /ipv6 fd7a:115c:a1e0::1 already in use/],
      [{ givenName: first.givenName }, /given name "node-1" already in use/],
    ];
    for (const [clash, message] of clashes) {
      await assert.rejects(
        store.saveNode(newNode(2, { userId: user.id, ...clash })),
        (e) => e instanceof StoreConflictError && message.test(e.message),
        `expected ${message}`,
      );
    }
    // Replacing a node so it takes another's address is refused too.
    const second = await store.saveNode(newNode(2, { userId: user.id }));
    await assert.rejects(store.saveNode({ ...second, ipv4: first.ipv4 }), /ipv4 .* already in use/);
    // Missing addresses do not clash with each other.
    await store.saveNode(newNode(3, { userId: user.id, ipv4: null, ipv6: null }));
    await store.saveNode(newNode(4, { userId: user.id, ipv4: null, ipv6: null }));
    assert.equal((await store.listNodes()).length, 4);
  });

  test("nodes: a missing user or pre-auth key is reported as not found", async (_fx, store) => {
    await assert.rejects(
      store.saveNode(newNode(1, { userId: 999 })),
      (e) => e instanceof StoreNotFoundError && /user 999 not found/.test(e.message),
    );
    const user = await store.insertUser(newUser("alice"));
    await assert.rejects(
      store.saveNode(newNode(1, { userId: user.id, authKeyId: 777 })),
      (e) => e instanceof StoreNotFoundError && /pre-auth key 777 not found/.test(e.message),
    );
    assert.deepEqual(await store.listNodes(), []);
  });

  test("saveNode marks a single-use key used in the same transaction", async (_fx, store) => {
    const user = await store.insertUser(newUser("alice"));
    const once = await store.insertPreAuthKey(newPreAuthKey("a1", user.id));
    const many = await store.insertPreAuthKey({ ...newPreAuthKey("a2", user.id), reusable: true });
    const taken = await store.saveNode(newNode(1, { userId: user.id }));

    // The node write fails (address taken): the key must stay unused.
    await assert.rejects(
      store.saveNode(
        newNode(2, { userId: user.id, ipv4: taken.ipv4, authKeyId: once.id }),
        once.id,
      ),
      StoreConflictError,
    );
    assert.equal(await keyUsed(store, once.id), false);
    assert.equal((await store.listNodes()).length, 1);

    // A missing key undoes the node write.
    await assert.rejects(store.saveNode(newNode(3, { userId: user.id }), 4242), StoreNotFoundError);
    assert.equal((await store.listNodes()).length, 1);

    const node = await store.saveNode(newNode(2, { userId: user.id, authKeyId: once.id }), once.id);
    assert.equal(node.authKeyId, once.id);
    assert.equal(await keyUsed(store, once.id), true);

    await store.saveNode(newNode(4, { userId: user.id, authKeyId: many.id }), many.id);
    await store.saveNode({ ...node, authKeyId: many.id }, many.id);
    assert.equal(await keyUsed(store, many.id), false, "a reusable key is never marked used");
  });

  test("nodes registering at once with one reusable key are all saved", async (_fx, store) => {
    const user = await store.insertUser(newUser("alice"));
    const many = await store.insertPreAuthKey({ ...newPreAuthKey("a2", user.id), reusable: true });
    // Each write holds the key's row through its foreign key; locking it must not deadlock.
    const saved = await Promise.all(
      [1, 2, 3, 4, 5, 6, 7, 8].map((i) =>
        store.saveNode(newNode(i, { userId: user.id, authKeyId: many.id }), many.id)
      ),
    );
    assert.equal(saved.length, 8);
    assert.equal((await store.listNodes()).length, 8);
  });

  test("deleteUser is refused while the user owns nodes, then cascades", async (_fx, store) => {
    const alice = await store.insertUser(newUser("alice"));
    const key = await store.insertPreAuthKey(newPreAuthKey("k1", alice.id));
    const other = await store.insertUser(newUser("bob"));
    const otherKey = await store.insertPreAuthKey(newPreAuthKey("k2", other.id));
    const owned = await store.saveNode(newNode(1, { userId: alice.id, authKeyId: key.id }));
    // A tagged node made with alice's key is not hers, so it does not block the delete.
    const tagged = await store.saveNode(
      newNode(2, { userId: null, tags: ["tag:ci"], authKeyId: key.id }),
    );

    await assert.rejects(
      store.deleteUser(alice.id),
      (e) => e instanceof StoreConflictError && /still owns 1 node\b/.test(e.message),
    );
    assert.equal((await store.listUsers()).length, 2);
    assert.equal((await store.listPreAuthKeys()).length, 2);

    await store.deleteNode(owned.id);
    await store.deleteUser(alice.id);
    assert.deepEqual((await store.listUsers()).map((u) => u.name), ["bob"]);
    assert.deepEqual((await store.listPreAuthKeys()).map((k) => k.id), [otherKey.id]);
    assert.deepEqual(await store.listNodes(), [{ ...tagged, authKeyId: null }]);
  });

  test("pre-auth keys: insert, list, update, delete, conflicts", async (_fx, store) => {
    const user = await store.insertUser(newUser("alice"));
    const key = await store.insertPreAuthKey({
      ...newPreAuthKey("abc123", user.id),
      tags: ["tag:a"],
      ephemeral: true,
      expiration: new Date("2030-01-02T03:04:05.678Z"),
    });
    const tagOnly = await store.insertPreAuthKey({ ...newPreAuthKey("def456", null), used: true });
    assert.deepEqual(key, {
      ...newPreAuthKey("abc123", user.id),
      tags: ["tag:a"],
      ephemeral: true,
      expiration: new Date("2030-01-02T03:04:05.678Z"),
      id: key.id,
    });
    assert.deepEqual(await store.listPreAuthKeys(), [key, tagOnly]);

    const expired = { ...key, expiration: new Date("2020-01-01T00:00:00.000Z"), used: true };
    await store.updatePreAuthKey(expired);
    assert.deepEqual(await store.listPreAuthKeys(), [expired, tagOnly]);

    await assert.rejects(
      store.insertPreAuthKey(newPreAuthKey("abc123", user.id)),
      (e) =>
        e instanceof StoreConflictError && /pre-auth key prefix already exists/.test(e.message),
    );
    await assert.rejects(
      store.insertPreAuthKey(newPreAuthKey("zzz", 555)),
      (e) => e instanceof StoreNotFoundError && /user 555 not found/.test(e.message),
    );

    const node = await store.saveNode(newNode(1, { userId: user.id, authKeyId: key.id }));
    await store.deletePreAuthKey(key.id);
    assert.deepEqual(await store.listPreAuthKeys(), [tagOnly]);
    assert.deepEqual(await store.listNodes(), [{ ...node, authKeyId: null }]);
    await assert.rejects(store.deletePreAuthKey(key.id), StoreNotFoundError);
    await assert.rejects(store.updatePreAuthKey(key), StoreNotFoundError);
  });

  test("API keys: insert, list, update, delete, conflicts", async (_fx, store) => {
    const key = await store.insertApiKey(newApiKey("p1"));
    const other = await store.insertApiKey({ ...newApiKey("p2"), expiration: null });
    assert.deepEqual(key, { ...newApiKey("p1"), id: key.id });
    assert.deepEqual(await store.listApiKeys(), [key, other]);

    const seen = { ...key, lastSeen: new Date("2026-03-04T05:06:07.089Z") };
    await store.updateApiKey(seen);
    assert.deepEqual(await store.listApiKeys(), [seen, other]);

    await assert.rejects(
      store.insertApiKey(newApiKey("p2")),
      (e) => e instanceof StoreConflictError && /API key prefix already exists/.test(e.message),
    );
    await store.deleteApiKey(key.id);
    assert.deepEqual(await store.listApiKeys(), [other]);
    await assert.rejects(store.deleteApiKey(key.id), StoreNotFoundError);
    await assert.rejects(store.updateApiKey(seen), StoreNotFoundError);
  });

  test("updateNodes writes a batch of session fields in one call", async (_fx, store) => {
    const user = await store.insertUser(newUser("alice"));
    const nodes: NodeRecord[] = [];
    for (let i = 1; i <= 40; i++) nodes.push(await store.saveNode(newNode(i, { userId: user.id })));
    const gone = nodes.pop()!;
    await store.deleteNode(gone.id);

    const changed = nodes.map((n, i) => ({
      ...n,
      discoKey: `discokey:${String(i).padStart(64, "d")}`,
      hostname: `host-${i}`,
      hostinfo: { Hostname: `host-${i}`, IPNVersion: "1.80.0", RoutableIPs: [`10.${i}.0.0/16`] },
      endpoints: [`198.51.100.${i}:41641`],
      lastSeen: new Date(Date.UTC(2025, 0, 1, 0, 0, i, i)),
      updatedAt: new Date(Date.UTC(2025, 0, 1, 0, 1, i, 7)),
    }));
    // Fields outside a map session's reach are left alone (they change through saveNode).
    const withStaleName = changed.map((n) => ({ ...n, givenName: "stale", ipv4: null }));
    await store.updateNodes([...withStaleName, { ...gone, hostname: "deleted meanwhile" }]);
    assert.deepEqual(await store.listNodes(), changed);

    await store.updateNodes([]);
    assert.deepEqual(await store.listNodes(), changed);

    // All or nothing: one bad node in the batch and no node changes.
    const bad = changed.map((n, i) => ({
      ...n,
      hostname: "never written",
      updatedAt: i === 20 ? new Date(NaN) : n.updatedAt,
    }));
    await assert.rejects(store.updateNodes(bad), /node updatedAt is not a valid date/);
    assert.deepEqual(await store.listNodes(), changed);
  });

  test("policy: none at first, then the latest one set", async (_fx, store) => {
    assert.equal(await store.getPolicy(), null);
    await store.setPolicy('{"acls": []}');
    await store.setPolicy('{"acls": [{"action": "accept", "src": ["*"], "dst": ["*:*"]}]}');
    assert.equal(
      await store.getPolicy(),
      '{"acls": [{"action": "accept", "src": ["*"], "dst": ["*:*"]}]}',
    );
  });

  test("timestamps round-trip exactly to the millisecond", async (fx, store) => {
    const times = [
      new Date(0),
      new Date("1970-01-01T00:00:00.001Z"),
      new Date("1999-12-31T23:59:59.999Z"),
      new Date("2024-02-29T12:34:56.789+05:30"),
      new Date("2099-07-01T00:00:00.500Z"),
      new Date(Date.UTC(2025, 5, 15, 1, 2, 3, 4)),
    ];
    const user = await store.insertUser(newUser("alice"));
    for (const [i, t] of times.entries()) {
      await store.insertUser({ ...newUser(`u${i}`), createdAt: t });
      await store.saveNode(
        newNode(i + 1, { userId: user.id, expiry: t, lastSeen: t, createdAt: t, updatedAt: t }),
      );
      await store.insertPreAuthKey({
        ...newPreAuthKey(`k${i}`, null),
        expiration: t,
        createdAt: t,
      });
      await store.insertApiKey({ ...newApiKey(`a${i}`), expiration: t, lastSeen: t, createdAt: t });
    }
    await store.close();
    const reopened = await fx.open();
    const ms = (d: Date | null) => d?.getTime();
    const want = times.map((t) => t.getTime());
    assert.deepEqual((await reopened.listUsers()).slice(1).map((u) => ms(u.createdAt)), want);
    for (const n of await reopened.listNodes()) {
      assert.ok(n.expiry instanceof Date);
      assert.deepEqual(
        [ms(n.lastSeen), ms(n.createdAt), ms(n.updatedAt)],
        Array(3).fill(ms(n.expiry)),
      );
    }
    assert.deepEqual((await reopened.listNodes()).map((n) => ms(n.expiry)), want);
    assert.deepEqual((await reopened.listPreAuthKeys()).map((k) => ms(k.expiration)), want);
    assert.deepEqual((await reopened.listApiKeys()).map((k) => ms(k.lastSeen)), want);
  });

  test("bad input is refused with a clear error and writes nothing", async (_fx, store) => {
    await assert.rejects(
      store.insertUser({ ...newUser("alice"), createdAt: new Date("not a date") }),
      /user createdAt is not a valid date/,
    );
    await assert.rejects(store.deleteNode(1.5), /node id must be a positive integer/);
    const user = await store.insertUser(newUser("alice"));
    await assert.rejects(
      store.saveNode(newNode(1, { userId: user.id, tags: [42 as unknown as string] })),
      /node tags must be a list of strings/,
    );
    assert.deepEqual(await store.listNodes(), []);
    assert.deepEqual((await store.listUsers()).map((u) => u.name), ["alice"]);
  });

  test("migrations are idempotent and keep the data", async (fx, store) => {
    await store.insertUser(newUser("alice"));
    await store.migrate();
    await store.migrate();
    await store.close();
    const reopened = await fx.open();
    assert.deepEqual((await reopened.listUsers()).map((u) => u.name), ["alice"]);
    await reopened.ping();
  });

  test("a database from a newer version is refused", async (fx, store) => {
    await store.close();
    const future = LATEST_VERSION + 1;
    await fx.exec(
      `INSERT INTO schema_migrations (version, name, applied_at)
       VALUES (${future}, 'from the future', '2030-01-01T00:00:00.000Z')`,
    );
    await assert.rejects(
      fx.open(),
      (e) =>
        e instanceof StoreVersionError && e.message.includes(`version ${future}`) &&
        e.message.includes(`version ${LATEST_VERSION}`) &&
        e.message.includes("upgrade headscale-deno"),
    );
  });

  test("tables without migration records are not taken over", async (fx, store) => {
    await store.insertUser(newUser("alice"));
    await store.close();
    await fx.exec("DROP TABLE schema_migrations");
    await assert.rejects(
      fx.open(),
      /already has tables \(.*users.*\).*not created by headscale-deno/,
    );
    await fx.exec("INSERT INTO users (name, created_at) VALUES ('still', '2025-01-01T00:00:00Z')");
  });

  test("an upgrade applies only new migrations; a failing one rolls back", async (fx, store) => {
    await store.insertUser(newUser("alice"));
    await store.close();
    const next = LATEST_VERSION + 1;
    const addTable: Migration = {
      version: next,
      name: "add notes",
      sqlite: "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL);",
      postgres: "CREATE TABLE notes (id bigint PRIMARY KEY, body text NOT NULL);",
    };
    const broken: Migration = {
      version: next + 1,
      name: "broken",
      sqlite: "CREATE TABLE half (id INTEGER); INSERT INTO no_such_table VALUES (1);",
      postgres: "CREATE TABLE half (id bigint); INSERT INTO no_such_table VALUES (1);",
    };
    await assert.rejects(fx.open([...MIGRATIONS, addTable, broken]), /no_such_table/);
    // The good step stayed; the broken one left nothing behind.
    await fx.exec("INSERT INTO notes (id, body) VALUES (1, 'kept')");
    await assert.rejects(fx.exec("INSERT INTO half (id) VALUES (1)"), /half/);
    const upgraded = await fx.open([...MIGRATIONS, addTable]);
    assert.deepEqual((await upgraded.listUsers()).map((u) => u.name), ["alice"]);
    // And the older build now refuses it.
    await upgraded.close();
    await assert.rejects(fx.open(), StoreVersionError);
  });

  test("ping answers while open; close is final", async (fx, store) => {
    await store.ping();
    await store.close();
    await assert.rejects(store.ping());
    const again = await fx.open();
    await again.ping();
  });
}

// ---- records --------------------------------------------------------------------------------

const T0 = new Date("2025-03-01T10:00:00.123Z");

function newUser(name: string): NewUser {
  return {
    name,
    displayName: name.toUpperCase(),
    email: `${name}@example.com`,
    providerId: "",
    provider: "",
    profilePicUrl: "",
    createdAt: T0,
  };
}

function newNode(i: number, fields: Partial<NewNode> = {}): NewNode {
  const hex = (prefix: string) => `${prefix}:${String(i).padStart(64, "0")}`;
  return {
    machineKey: hex("mkey"),
    nodeKey: hex("nodekey"),
    discoKey: "",
    ipv4: `100.64.0.${i}`,
    ipv6: `fd7a:115c:a1e0::${i.toString(16)}`,
    hostname: `node-${i}`,
    givenName: `node-${i}`,
    userId: null,
    tags: [],
    authKeyId: null,
    registerMethod: "authkey",
    ephemeral: false,
    hostinfo: { Hostname: `node-${i}` },
    endpoints: [],
    approvedRoutes: [],
    expiry: null,
    lastSeen: null,
    createdAt: T0,
    updatedAt: T0,
    ...fields,
  };
}

function newPreAuthKey(prefix: string, userId: number | null): NewPreAuthKey {
  return {
    prefix,
    hash: `scrypt$hash-of-${prefix}`,
    userId,
    reusable: false,
    ephemeral: false,
    used: false,
    tags: [],
    expiration: new Date("2030-01-01T00:00:00.000Z"),
    createdAt: T0,
  };
}

function newApiKey(prefix: string): NewApiKey {
  return {
    prefix,
    hash: `scrypt$hash-of-${prefix}`,
    expiration: new Date("2031-01-01T00:00:00.000Z"),
    lastSeen: null,
    createdAt: T0,
  };
}

async function keyUsed(store: Store, id: number): Promise<boolean | undefined> {
  return (await store.listPreAuthKeys()).find((k) => k.id === id)?.used;
}

// ---- fixtures -------------------------------------------------------------------------------

/** Opens every store through openStore, as the server does, and closes them all at the end. */
function tracking(config: (migrations?: readonly Migration[]) => StoreConfig) {
  const opened: Store[] = [];
  return {
    async open(migrations?: readonly Migration[]) {
      const store = await openStore(config(migrations));
      opened.push(store);
      return store;
    },
    async closeAll() {
      for (const store of opened) await store.close().catch(() => {});
    },
  };
}

async function sqliteFixture(): Promise<StoreFixture> {
  const { DatabaseSync } = await import("node:sqlite");
  const dir = await Deno.makeTempDir({ prefix: "headscale-store-" });
  // A directory that does not exist yet: openStore must create it.
  const path = `${dir}/nested/db.sqlite`;
  const stores = tracking((migrations) => ({
    type: "sqlite",
    sqlite: { path, writeAheadLog: true, migrations },
  }));
  return {
    open: stores.open,
    // deno-lint-ignore require-await
    async exec(sql) {
      const db = new DatabaseSync(path);
      try {
        db.exec(sql);
      } finally {
        db.close();
      }
    },
    async dispose() {
      await stores.closeAll();
      await Deno.remove(dir, { recursive: true });
    },
  };
}

/** Reads a postgres:// URL into the configuration's fields. */
function postgresConfigFromUrl(url: string) {
  const u = new URL(url);
  return {
    host: u.hostname,
    port: Number(u.port || 5432),
    name: decodeURIComponent(u.pathname.slice(1)),
    user: decodeURIComponent(u.username),
    pass: decodeURIComponent(u.password),
    ssl: u.searchParams.get("sslmode") ?? "disable",
    maxOpenConns: 4,
  };
}

async function postgresFixture(url: string): Promise<StoreFixture> {
  const schema = `hs_test_${crypto.randomUUID().replaceAll("-", "").slice(0, 20)}`;
  const admin = postgres(url, { max: 1, onnotice: () => {}, fetch_types: false });
  await admin.unsafe(`CREATE SCHEMA ${schema}`);
  const stores = tracking((migrations) => ({
    type: "postgres",
    postgres: { ...postgresConfigFromUrl(url), schema, migrations },
  }));
  return {
    open: stores.open,
    async exec(sql) {
      await admin.begin(async (tx) => {
        await tx.unsafe(`SET LOCAL search_path TO ${schema}`);
        await tx.unsafe(sql);
      });
    },
    async dispose() {
      await stores.closeAll();
      await admin.unsafe(`DROP SCHEMA ${schema} CASCADE`);
      await admin.end();
    },
  };
}

storeContract("sqlite", sqliteFixture);

const postgresUrl = Deno.env.get("HEADSCALE_TEST_POSTGRES_URL");
storeContract(
  "postgres",
  () => postgresFixture(postgresUrl!),
  postgresUrl ? {} : { ignore: "needs HEADSCALE_TEST_POSTGRES_URL, see scripts/pg_test_server.sh" },
);
