/**
 * What only the SQLite backend does: connection settings, creating the file's directory, the
 * configuration's `database` section accepted as is, and clear errors for a bad path or a
 * damaged row. The shared behaviour is in store_contract_test.ts.
 */
import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import type { Config } from "../lib/config/config.ts";
import { openStore } from "../lib/store/mod.ts";
import { configureConnection } from "../lib/store/sqlite.ts";

async function withTempDir(fn: (dir: string) => Promise<void> | void): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "headscale-sqlite-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

function pragma(db: DatabaseSync, name: string): unknown {
  return Object.values(db.prepare(`PRAGMA ${name}`).get()!)[0];
}

Deno.test("store sqlite: connection uses WAL, synchronous FULL, foreign keys, busy timeout", async () => {
  await withTempDir((dir) => {
    const db = new DatabaseSync(`${dir}/a.sqlite`, { enableForeignKeyConstraints: false });
    try {
      configureConnection(db, { writeAheadLog: true });
      assert.equal(pragma(db, "journal_mode"), "wal");
      assert.equal(pragma(db, "synchronous"), 2, "FULL");
      assert.equal(pragma(db, "foreign_keys"), 1);
      assert.equal(pragma(db, "busy_timeout"), 5000);
    } finally {
      db.close();
    }
    const plain = new DatabaseSync(`${dir}/b.sqlite`);
    try {
      configureConnection(plain, { writeAheadLog: false, busyTimeoutMs: 250 });
      assert.equal(pragma(plain, "journal_mode"), "delete");
      assert.equal(pragma(plain, "synchronous"), 2);
      assert.equal(pragma(plain, "busy_timeout"), 250);
    } finally {
      plain.close();
    }
  });
});

Deno.test("store sqlite: openStore takes the config's database section and creates the directory", async () => {
  await withTempDir(async (dir) => {
    const database: Config["database"] = {
      type: "sqlite",
      debug: false,
      sqlite: { path: `${dir}/deep/er/db.sqlite`, writeAheadLog: true },
    };
    const store = await openStore(database);
    try {
      assert.equal(store.kind, "sqlite");
      await store.setPolicy("{}");
    } finally {
      await store.close();
    }
    assert.ok((await Deno.stat(`${dir}/deep/er/db.sqlite`)).isFile);
    const raw = new DatabaseSync(`${dir}/deep/er/db.sqlite`);
    try {
      assert.equal(pragma(raw, "journal_mode"), "wal", "WAL is recorded in the file");
      const tables = raw.prepare(
        "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name",
      )
        .all().map((r) => r.name);
      const ours = ["api_keys", "nodes", "policies", "pre_auth_keys", "schema_migrations", "users"];
      assert.deepEqual(tables.filter((t) => ours.includes(String(t))), ours);
    } finally {
      raw.close();
    }
  });
});

Deno.test("store sqlite: a path that cannot be a database fails with the path in the message", async () => {
  await withTempDir(async (dir) => {
    await Deno.writeTextFile(`${dir}/file`, "");
    await assert.rejects(
      openStore({ type: "sqlite", sqlite: { path: `${dir}/file/db.sqlite`, writeAheadLog: true } }),
      (e) => e instanceof Error && e.message.includes(`${dir}/file`),
    );
    await Deno.writeTextFile(`${dir}/junk.sqlite`, "this is not a database ".repeat(100));
    await assert.rejects(
      openStore({ type: "sqlite", sqlite: { path: `${dir}/junk.sqlite`, writeAheadLog: true } }),
      (e) => e instanceof Error && e.message.includes("junk.sqlite"),
    );
  });
});

Deno.test("store sqlite: an unknown database type is refused", async () => {
  await assert.rejects(
    openStore({ type: "mysql" } as unknown as Parameters<typeof openStore>[0]),
    /database\.type "mysql" is not "sqlite" or "postgres"/,
  );
});

Deno.test("store sqlite: a damaged JSON column is reported with its row, not hidden", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/db.sqlite`;
    const store = await openStore({ type: "sqlite", sqlite: { path, writeAheadLog: true } });
    try {
      const t = new Date("2025-01-01T00:00:00.000Z");
      const node = await store.saveNode({
        machineKey: "mkey:1",
        nodeKey: "nodekey:1",
        discoKey: "",
        ipv4: "100.64.0.1",
        ipv6: null,
        hostname: "a",
        givenName: "a",
        userId: null,
        tags: ["tag:x"],
        authKeyId: null,
        registerMethod: "authkey",
        ephemeral: false,
        hostinfo: null,
        endpoints: [],
        approvedRoutes: [],
        expiry: null,
        lastSeen: null,
        createdAt: t,
        updatedAt: t,
      });
      const raw = new DatabaseSync(path);
      raw.prepare("UPDATE nodes SET endpoints = '{not json' WHERE id = ?").run(node.id);
      raw.close();
      await assert.rejects(
        store.listNodes(),
        new RegExp(`nodes row ${node.id} endpoints is not valid JSON`),
      );
    } finally {
      await store.close();
    }
  });
});
