/**
 * `migrate from-headscale`: a headscale v0.29 database, built here from headscale's own
 * schema.sql with rows written by the test, is imported with ids, addresses, names, tags, routes
 * and keys intact; headscale's keys keep authenticating; refusals write nothing.
 */
import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import bcrypt from "bcryptjs";
import { parseConfigText } from "../lib/config/load.ts";
import { silentLogger } from "../lib/log/log.ts";
import { State } from "../lib/state/state.ts";
import { openStore } from "../lib/store/mod.ts";
import {
  checkVersion,
  MigrateError,
  parseTime,
  planImport,
  readSqlite,
} from "../lib/migrate/headscale.ts";
import { importPlan } from "../lib/migrate/import.ts";
import { runCli } from "../lib/cli/run.ts";
import { captureIO } from "./helpers/cli_io.ts";

const SCHEMA = Deno.readTextFileSync(
  new URL("./fixtures/headscale/schema-v0.29.2.sql", import.meta.url),
);

const hex = (c: string) => c.repeat(64);
// headscale's key secrets are base64url: dashes and underscores included.
const AUTH_PREFIX = "Ab_3-xYz9Qw1";
const AUTH_SECRET = "s3cr-t_" + "x".repeat(57);
const API_PREFIX = "k_y-PREFIX12";
const API_SECRET = "Api-secret_" + "y".repeat(53);
const LEGACY_AUTH = "0123456789abcdef".repeat(3);
const LEGACY_API = "abc_efg.0123456789abcdefghijklmnopqrstuv";
const TIME = "2025-06-01 10:20:30.123456789+00:00";

/** A headscale v0.29.2 database with two users, four nodes (with id gaps), keys and a policy. */
function makeHeadscaleDb(path: string, version = "v0.29.2") {
  const db = new DatabaseSync(path);
  db.exec(SCHEMA);
  const run = (sql: string, ...p: (string | number | null | Uint8Array)[]) =>
    db.prepare(sql).run(...p);
  for (const id of ["202511131445-node-forced-tags-to-tags", "202606181200-recover-null-tags"]) {
    run("INSERT INTO migrations(id) VALUES (?)", id);
  }
  run("INSERT INTO database_versions(id, version, updated_at) VALUES (1, ?, ?)", version, TIME);
  const user = "INSERT INTO users(id, name, display_name, email, provider_identifier, provider, " +
    "created_at, updated_at, deleted_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)";
  run(user, 1, "alice", "Alice A", "alice@example.com", null, null, TIME, TIME, null);
  run(user, 2, "gone", "", "", null, null, TIME, TIME, TIME);
  run(
    user,
    4,
    "bob",
    "Bob",
    "bob@example.com",
    "https://id.example.com/bob",
    "oidc",
    TIME,
    TIME,
    null,
  );
  const bc = (s: string) => new TextEncoder().encode(bcrypt.hashSync(s, 4));
  const key =
    "INSERT INTO pre_auth_keys(id, key, prefix, hash, user_id, reusable, ephemeral, used, " +
    "tags, expiration, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";
  run(
    key,
    1,
    "",
    AUTH_PREFIX,
    bc(AUTH_SECRET),
    1,
    1,
    0,
    0,
    "[]",
    "2099-01-01 00:00:00+00:00",
    TIME,
  );
  run(key, 3, LEGACY_AUTH, "", null, 1, 1, 0, 0, null, null, TIME);
  run(key, 4, "", "tAgGeDkey123", bc("t".repeat(64)), 1, 0, 0, 1, '["tag:server"]', null, TIME);
  const node =
    "INSERT INTO nodes(id, machine_key, node_key, disco_key, endpoints, host_info, ipv4, " +
    "ipv6, hostname, given_name, user_id, register_method, tags, auth_key_id, last_seen, expiry, " +
    "approved_routes, created_at, updated_at, deleted_at) " +
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";
  const hostinfo = JSON.stringify({ Hostname: "router", RoutableIPs: ["10.1.0.0/24"] });
  run(
    node,
    1,
    `mkey:${hex("1")}`,
    `nodekey:${hex("1")}`,
    `discokey:${hex("1")}`,
    '["192.0.2.1:41641"]',
    hostinfo,
    "100.64.0.1",
    "fd7a:115c:a1e0::1",
    "router",
    "router",
    1,
    "authkey",
    "[]",
    1,
    TIME,
    null,
    '["10.1.0.0/24"]',
    TIME,
    TIME,
    null,
  );
  run(
    node,
    2,
    `mkey:${hex("2")}`,
    `nodekey:${hex("2")}`,
    "",
    "[]",
    "{}",
    "100.64.0.2",
    null,
    "srv",
    "srv-1",
    null,
    "authkey",
    '["tag:server"]',
    4,
    null,
    null,
    "[]",
    TIME,
    TIME,
    null,
  );
  run(
    node,
    5,
    `mkey:${hex("5")}`,
    `nodekey:${hex("5")}`,
    "",
    null,
    null,
    "100.64.0.5",
    "fd7a:115c:a1e0::5",
    "laptop",
    "laptop",
    4,
    "cli",
    null,
    null,
    TIME,
    "2030-01-02 03:04:05+00:00",
    null,
    TIME,
    TIME,
    null,
  );
  // Owned by a deleted user: cannot be taken.
  run(
    node,
    6,
    `mkey:${hex("6")}`,
    `nodekey:${hex("6")}`,
    "",
    null,
    null,
    "100.64.0.6",
    null,
    "orphan",
    "orphan",
    2,
    "cli",
    null,
    null,
    null,
    null,
    null,
    TIME,
    TIME,
    null,
  );
  const api = "INSERT INTO api_keys(id, prefix, hash, expiration, last_seen, created_at) " +
    "VALUES (?, ?, ?, ?, ?, ?)";
  run(api, 2, API_PREFIX, bc(API_SECRET), "2099-01-01 00:00:00+00:00", null, TIME);
  run(api, 3, LEGACY_API.split(".")[0], bc(LEGACY_API.split(".")[1]), null, null, TIME);
  run(
    "INSERT INTO policies(id, data, created_at, updated_at) VALUES (1, ?, ?, ?)",
    '{"acls":[{"action":"accept","src":["*"],"dst":["*:*"]}]}',
    TIME,
    TIME,
  );
  db.close();
}

function sqliteTarget(path: string) {
  return { type: "sqlite" as const, sqlite: { path, writeAheadLog: true } };
}

async function digest(path: string): Promise<string> {
  const bytes = await Deno.readFile(path);
  return Array.from(new Uint8Array(await crypto.subtle.digest("SHA-256", bytes))).join(",");
}

Deno.test("migrate: gorm's times read, Go's zero time is no time", () => {
  assert.equal(parseTime(TIME)?.toISOString(), "2025-06-01T10:20:30.123Z");
  assert.equal(parseTime("2030-01-02 03:04:05+01:00")?.toISOString(), "2030-01-02T02:04:05.000Z");
  assert.equal(parseTime("0001-01-01 00:00:00+00:00"), null);
  assert.equal(parseTime(null), null);
});

Deno.test("migrate: the plan takes every row it can and names the rest", async () => {
  const dir = await Deno.makeTempDir();
  try {
    makeHeadscaleDb(`${dir}/hs.sqlite`);
    const plan = planImport(readSqlite(`${dir}/hs.sqlite`));
    assert.equal(plan.version, "v0.29.2");
    assert.deepEqual(plan.users.map((u) => u.name), ["alice", "bob"]);
    assert.deepEqual(plan.nodes.map((n) => n.id), [1, 2, 5]);
    assert.equal(plan.preAuthKeys.length, 3);
    assert.equal(plan.apiKeys.length, 2);
    assert.ok(plan.policy?.includes("accept"));
    assert.deepEqual(
      plan.skipped.map((s) => `${s.table} ${s.id}: ${s.reason}`),
      ["users 2: deleted in headscale", "nodes 6: user 2 is gone"],
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("migrate: import keeps ids, addresses, names, tags, routes; headscale's keys work", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const source = `${dir}/hs.sqlite`;
    makeHeadscaleDb(source);
    const before = await digest(source);
    const target = sqliteTarget(`${dir}/ours/db.sqlite`);
    await importPlan(target, planImport(readSqlite(source)), { source });
    assert.equal(await digest(source), before, "the headscale database was written to");

    const store = await openStore(target);
    const state = await State.open({
      store,
      log: silentLogger(),
      config: parseConfigText("").config,
    });
    try {
      const nodes = await store.listNodes();
      assert.deepEqual(nodes.map((n) => n.id), [1, 2, 5]);
      const [router, srv, laptop] = nodes;
      assert.equal(router.ipv4, "100.64.0.1");
      assert.equal(router.ipv6, "fd7a:115c:a1e0::1");
      assert.equal(router.givenName, "router");
      assert.equal(router.userId, 1);
      assert.deepEqual(router.approvedRoutes, ["10.1.0.0/24"]);
      assert.deepEqual(router.hostinfo?.RoutableIPs, ["10.1.0.0/24"]);
      assert.deepEqual(router.endpoints, ["192.0.2.1:41641"]);
      assert.equal(router.authKeyId, 1);
      assert.equal(router.registerMethod, "authkey");
      assert.equal(router.discoKey, `discokey:${hex("1")}`);
      assert.deepEqual(srv.tags, ["tag:server"]);
      assert.equal(srv.userId, null);
      assert.equal(laptop.userId, 4);
      assert.equal(laptop.expiry?.toISOString(), "2030-01-02T03:04:05.000Z");
      assert.deepEqual((await store.listUsers()).map((u) => [u.id, u.name, u.email]), [
        [1, "alice", "alice@example.com"],
        [4, "bob", "bob@example.com"],
      ]);
      assert.equal((await store.listUsers())[1].providerId, "https://id.example.com/bob");
      assert.ok((await store.getPolicy())?.includes("accept"));

      // Keys headscale issued keep authenticating; a wrong secret does not.
      assert.equal(
        (await state.checkPreAuthKey(`hskey-auth-${AUTH_PREFIX}-${AUTH_SECRET}`)).id,
        1,
      );
      assert.equal((await state.checkPreAuthKey(LEGACY_AUTH)).id, 3);
      await assert.rejects(state.checkPreAuthKey(`hskey-auth-${AUTH_PREFIX}-${"z".repeat(64)}`));
      assert.equal(await state.checkApiKey(`hskey-api-${API_PREFIX}-${API_SECRET}`), true);
      assert.equal(await state.checkApiKey(LEGACY_API), true);
      assert.equal(await state.checkApiKey(`hskey-api-${API_PREFIX}-${"q".repeat(64)}`), false);
    } finally {
      await state.close();
      await store.close();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("migrate: versions other than v0.28.x and v0.29.x are refused by name", () => {
  assert.equal(checkVersion("v0.29.2", []), "v0.29.2");
  assert.equal(checkVersion("v0.28.0", []), "v0.28.0");
  assert.equal(checkVersion(null, ["202511131445-node-forced-tags-to-tags"]), "v0.28.x");
  // A development build of v0.29 records no version, but has the table.
  assert.equal(checkVersion(null, ["202511131445-node-forced-tags-to-tags"], true), "v0.29.x");
  // A database headscale created from scratch also lists gormigrate's SCHEMA_INIT marker.
  assert.equal(
    checkVersion(null, ["SCHEMA_INIT", "202511131445-node-forced-tags-to-tags"], true),
    "v0.29.x",
  );
  assert.throws(() => checkVersion(null, ["SCHEMA_INIT"]), /older than v0\.28/);
  assert.throws(
    () => checkVersion(null, ["202511131445-node-forced-tags-to-tags", "202701010000-future"]),
    /newer than v0\.29 \(migration 202701010000-future\)/,
  );
  assert.throws(
    () => checkVersion("v0.27.1", []),
    /headscale v0\.27\.1; only v0\.28\.x and v0\.29\.x/,
  );
  assert.throws(() => checkVersion("v0.30.0", []), /headscale v0\.30\.0, newer than/);
  assert.throws(
    () => checkVersion(null, ["202507021200"]),
    /older than v0\.28 \(last migration 202507021200\)/,
  );
});

async function cliInDir(dir: string, ...args: string[]) {
  const config = `${dir}/config.yaml`;
  await Deno.writeTextFile(
    config,
    `database:\n  type: sqlite\n  sqlite:\n    path: ${dir}/ours.sqlite\n`,
  );
  const io = captureIO();
  const code = await runCli(["migrate", "from-headscale", "-c", config, ...args], io);
  return { code, out: io.out.join("\n"), err: io.err.join("\n") };
}

Deno.test("migrate cli: --dry-run reports and writes nothing; the real run imports", async () => {
  const dir = await Deno.makeTempDir();
  try {
    makeHeadscaleDb(`${dir}/hs.sqlite`);
    const dry = await cliInDir(dir, "--from", `${dir}/hs.sqlite`, "--dry-run");
    assert.equal(dry.code, 0, dry.err);
    assert.match(dry.out, /nodes: +3/);
    assert.match(dry.out, /nodes id 6 \(orphan\): user 2 is gone/);
    assert.match(dry.out, /dry run: nothing written/);
    assert.equal(
      await Deno.stat(`${dir}/ours.sqlite`).then(() => true, () => false),
      false,
    );
    const real = await cliInDir(dir, "--from", `${dir}/hs.sqlite`);
    assert.equal(real.code, 0, real.err);
    assert.match(real.out, /imported into/);
    // A second run finds a non-empty target: refused, target untouched.
    const before = await digest(`${dir}/ours.sqlite`);
    const again = await cliInDir(dir, "--from", `${dir}/hs.sqlite`);
    assert.equal(again.code, 1);
    assert.match(again.err, /already holds 2 user\(s\), 3 node\(s\).*--force/);
    assert.equal(await digest(`${dir}/ours.sqlite`), before);
    // --force replaces it and keeps the old file.
    const forced = await cliInDir(dir, "--from", `${dir}/hs.sqlite`, "--force");
    assert.equal(forced.code, 0, forced.err);
    assert.ok(await Deno.stat(`${dir}/ours.sqlite.before-import`));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("migrate cli: refusals say why and write nothing", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const exists = (p: string) => Deno.stat(p).then(() => true, () => false);
    // Corrupt file.
    await Deno.writeTextFile(`${dir}/corrupt.sqlite`, "this is not a database ".repeat(100));
    let r = await cliInDir(dir, "--from", `${dir}/corrupt.sqlite`);
    assert.equal(r.code, 1);
    assert.match(r.err, /cannot import: .*corrupt\.sqlite.*(not a (SQLite )?database|cannot open)/);
    // Unsupported version.
    makeHeadscaleDb(`${dir}/old.sqlite`, "v0.26.1");
    r = await cliInDir(dir, "--from", `${dir}/old.sqlite`);
    assert.equal(r.code, 1);
    assert.match(r.err, /written by headscale v0\.26\.1; only v0\.28\.x and v0\.29\.x/);
    // Not a headscale database at all (one of ours).
    (await openStore(sqliteTarget(`${dir}/mine.sqlite`))).close();
    r = await cliInDir(dir, "--from", `${dir}/mine.sqlite`);
    assert.match(r.err, /is not a headscale database/);
    // Missing file.
    r = await cliInDir(dir, "--from", `${dir}/nope.sqlite`);
    assert.match(r.err, /nope\.sqlite does not exist/);
    assert.equal(await exists(`${dir}/ours.sqlite`), false);
    // The target is the headscale database itself.
    makeHeadscaleDb(`${dir}/ours.sqlite`);
    const before = await digest(`${dir}/ours.sqlite`);
    r = await cliInDir(dir, "--from", `${dir}/ours.sqlite`);
    assert.match(r.err, /is the headscale database itself; move it aside/);
    assert.equal(await digest(`${dir}/ours.sqlite`), before);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("migrate: a failure midway leaves no target behind", async () => {
  const dir = await Deno.makeTempDir();
  try {
    makeHeadscaleDb(`${dir}/hs.sqlite`);
    const plan = planImport(readSqlite(`${dir}/hs.sqlite`));
    // Two nodes with one address: the store refuses the second, the import as a whole fails.
    plan.nodes[1].ipv4 = plan.nodes[0].ipv4;
    await assert.rejects(importPlan(sqliteTarget(`${dir}/ours.sqlite`), plan));
    const left = [...Deno.readDirSync(dir)].map((e) => e.name).sort();
    assert.deepEqual(left, ["hs.sqlite"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("migrate: MigrateError is what the CLI reports", () => {
  assert.ok(new MigrateError("x") instanceof Error);
});
