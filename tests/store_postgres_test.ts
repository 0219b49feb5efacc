/**
 * What only the PostgreSQL backend does: the `ssl` setting, connection errors that name the
 * database without its password, and migrations from several servers at once. The shared
 * behaviour is in store_contract_test.ts. Tests that need a server run when
 * HEADSCALE_TEST_POSTGRES_URL is set (scripts/pg_test_server.sh starts one).
 */
import assert from "node:assert/strict";
import postgres from "postgres";
import type { Config } from "../lib/config/config.ts";
import { LATEST_VERSION } from "../lib/store/migrations.ts";
import { openStore } from "../lib/store/mod.ts";
import { openPostgresStore, sslMode } from "../lib/store/postgres.ts";

const url = Deno.env.get("HEADSCALE_TEST_POSTGRES_URL");
const needsServer = url
  ? ""
  : " (needs HEADSCALE_TEST_POSTGRES_URL, see scripts/pg_test_server.sh)";

function configFromUrl(u: URL) {
  return {
    host: u.hostname,
    port: Number(u.port || 5432),
    name: decodeURIComponent(u.pathname.slice(1)),
    user: decodeURIComponent(u.username),
    pass: decodeURIComponent(u.password),
    ssl: "false",
    maxOpenConns: 2,
  };
}

Deno.test("store postgres: the ssl setting maps to the driver's modes", () => {
  assert.equal(sslMode("false"), false);
  assert.equal(sslMode(""), false);
  assert.equal(sslMode("disable"), false);
  assert.equal(sslMode("true"), "require");
  assert.equal(sslMode("Require"), "require");
  assert.equal(sslMode("verify-full"), "verify-full");
  assert.equal(sslMode("prefer"), "prefer");
  assert.throws(() => sslMode("maybe"), /database\.postgres\.ssl "maybe" is not one of/);
});

Deno.test("store postgres: a schema name that is not a plain name is refused", () => {
  assert.throws(
    () =>
      openPostgresStore({
        host: "127.0.0.1",
        port: 5432,
        name: "x",
        user: "u",
        pass: "p",
        ssl: "false",
        maxOpenConns: 1,
        schema: "a; DROP TABLE users",
      }),
    /not a plain name/,
  );
});

Deno.test("store postgres: an unreachable server fails with the address, never the password", async () => {
  // Port 1 on loopback: nothing listens there, so the connection is refused at once.
  const database: Config["database"] = {
    type: "postgres",
    debug: false,
    postgres: {
      host: "127.0.0.1",
      port: 1,
      name: "hs",
      user: "alice",
      pass: "s3cret-pw",
      ssl: "false",
      maxOpenConns: 1,
    },
  };
  await assert.rejects(openStore(database), (e) => {
    assert.ok(e instanceof Error);
    assert.match(e.message, /PostgreSQL database hs at alice@127\.0\.0\.1:1/);
    assert.doesNotMatch(e.message, /s3cret-pw/);
    return true;
  });
});

Deno.test({
  name: `store postgres: a wrong password is refused with the server's reason${needsServer}`,
  ignore: !url,
  async fn() {
    const config = { ...configFromUrl(new URL(url!)), pass: "definitely-wrong" };
    await assert.rejects(
      openStore({ type: "postgres", postgres: config }),
      (e) =>
        e instanceof Error && /password authentication failed/.test(e.message) &&
        !e.message.includes("definitely-wrong"),
    );
  },
});

Deno.test({
  name: `store postgres: servers migrating at once apply each migration once${needsServer}`,
  ignore: !url,
  async fn() {
    const schema = `hs_test_${crypto.randomUUID().replaceAll("-", "").slice(0, 20)}`;
    const admin = postgres(url!, { max: 1, onnotice: () => {}, fetch_types: false });
    await admin.unsafe(`CREATE SCHEMA ${schema}`);
    const config = { ...configFromUrl(new URL(url!)), schema };
    const stores = await Promise.allSettled(
      [1, 2, 3].map(() => openStore({ type: "postgres", postgres: config })),
    );
    try {
      for (const s of stores) {
        assert.equal(s.status, "fulfilled", String((s as { reason?: unknown }).reason));
      }
      const rows = await admin.unsafe(`SELECT version FROM ${schema}.schema_migrations ORDER BY 1`);
      assert.deepEqual(
        rows.map((r) => r.version),
        Array.from({ length: LATEST_VERSION }, (_, i) => i + 1),
      );
    } finally {
      for (const s of stores) if (s.status === "fulfilled") await s.value.close();
      await admin.unsafe(`DROP SCHEMA ${schema} CASCADE`);
      await admin.end();
    }
  },
});
