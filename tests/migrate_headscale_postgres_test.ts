/**
 * `migrate from-headscale` from PostgreSQL: tables as headscale's gorm creates them there (bigint
 * ids, bytea hashes, timestamptz, booleans) are read in one read-only transaction and imported.
 * Runs when HEADSCALE_TEST_POSTGRES_URL is set (scripts/pg_test_server.sh starts a server).
 */
import assert from "node:assert/strict";
import postgres from "postgres";
import bcrypt from "bcryptjs";
import { planImport, readPostgres } from "../lib/migrate/headscale.ts";
import { importPlan } from "../lib/migrate/import.ts";
import { openStore } from "../lib/store/mod.ts";
import { verifySecret } from "../lib/auth/secrets.ts";

const url = Deno.env.get("HEADSCALE_TEST_POSTGRES_URL");

Deno.test({
  name: "migrate postgres: a headscale v0.29 database on PostgreSQL imports" +
    (url ? "" : " (needs HEADSCALE_TEST_POSTGRES_URL)"),
  ignore: !url,
  async fn() {
    const schema = `hs_import_${crypto.randomUUID().replaceAll("-", "").slice(0, 16)}`;
    const admin = postgres(url!, { max: 1, onnotice: () => {} });
    const dir = await Deno.makeTempDir();
    try {
      await admin.unsafe(`
        CREATE SCHEMA ${schema};
        SET search_path TO ${schema};
        CREATE TABLE migrations (id varchar(255) PRIMARY KEY);
        CREATE TABLE database_versions (id bigint PRIMARY KEY, version text NOT NULL,
          updated_at timestamptz);
        CREATE TABLE users (id bigserial PRIMARY KEY, name text, display_name text, email text,
          provider_identifier text, provider text, profile_pic_url text, created_at timestamptz,
          updated_at timestamptz, deleted_at timestamptz);
        CREATE TABLE pre_auth_keys (id bigserial PRIMARY KEY, key text, prefix text, hash bytea,
          user_id bigint, reusable boolean, ephemeral boolean DEFAULT false,
          used boolean DEFAULT false, tags text, expiration timestamptz, created_at timestamptz);
        CREATE TABLE api_keys (id bigserial PRIMARY KEY, prefix text, hash bytea,
          expiration timestamptz, last_seen timestamptz, created_at timestamptz);
        CREATE TABLE nodes (id bigserial PRIMARY KEY, machine_key text, node_key text,
          disco_key text, endpoints text, host_info text, ipv4 text, ipv6 text, hostname text,
          given_name varchar(63), user_id bigint, register_method text, tags text,
          auth_key_id bigint, last_seen timestamptz, expiry timestamptz, approved_routes text,
          created_at timestamptz, updated_at timestamptz, deleted_at timestamptz);
        CREATE TABLE policies (id bigserial PRIMARY KEY, data text, created_at timestamptz,
          updated_at timestamptz, deleted_at timestamptz);
        INSERT INTO migrations VALUES ('202511131445-node-forced-tags-to-tags');
        INSERT INTO database_versions VALUES (1, 'v0.29.2', now());
        INSERT INTO users (id, name, email, created_at) VALUES (3, 'alice', 'a@example.com', now());
      `);
      const secret = "P-g_" + "s".repeat(60);
      await admin.unsafe(`SET search_path TO ${schema}`);
      await admin`INSERT INTO ${admin(schema + ".pre_auth_keys")} (id, prefix, hash, user_id,
        reusable, tags, created_at) VALUES (2, 'PgPrefix_-12',
        ${new TextEncoder().encode(bcrypt.hashSync(secret, 4))}, 3, true, '[]', now())`;
      await admin`INSERT INTO ${admin(schema + ".nodes")} (id, machine_key, node_key, ipv4,
        hostname, given_name, user_id, register_method, tags, auth_key_id, approved_routes,
        expiry, created_at, updated_at)
        VALUES (7, ${"mkey:" + "7".repeat(64)}, ${"nodekey:" + "7".repeat(64)}, '100.64.0.7',
        'pg-node', 'pg-node', 3, 'authkey', '[]', 2, '["10.7.0.0/16"]',
        '2031-05-06 07:08:09+00', now(), now())`;

      const plan = planImport(await readPostgres(`${url}?search_path=${schema}`));
      assert.equal(plan.version, "v0.29.2");
      assert.deepEqual(plan.skipped, []);
      const target = {
        type: "sqlite" as const,
        sqlite: { path: `${dir}/db.sqlite`, writeAheadLog: true },
      };
      await importPlan(target, plan);
      const store = await openStore(target);
      try {
        const [node] = await store.listNodes();
        assert.equal(node.id, 7);
        assert.equal(node.userId, 3);
        assert.equal(node.ipv4, "100.64.0.7");
        assert.deepEqual(node.approvedRoutes, ["10.7.0.0/16"]);
        assert.equal(node.expiry?.toISOString(), "2031-05-06T07:08:09.000Z");
        const [key] = await store.listPreAuthKeys();
        assert.equal(key.id, 2);
        assert.ok(await verifySecret(secret, key.hash));
      } finally {
        await store.close();
      }
    } finally {
      await admin.unsafe(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
      await admin.end();
      await Deno.remove(dir, { recursive: true });
    }
  },
});
