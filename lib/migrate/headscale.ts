/**
 * Reads a headscale database (SQLite file or PostgreSQL URL) without ever writing to it, and turns
 * its rows into our records: a plan of what will be imported and every row that cannot be, with
 * the reason. Accepted: databases written by headscale v0.28.x and v0.29.x (the schema of its
 * hscontrol/db/schema.sql at v0.29.2; v0.28 lacks only the database_versions table). Older and
 * newer databases are refused by name: headscale itself upgrades one minor version at a time, so
 * an older install upgrades to v0.28 or v0.29 first.
 */
import { existsSync } from "node:fs";
import { DatabaseSync } from "node:sqlite";
import postgres from "postgres";
import type {
  NewApiKey,
  NewPreAuthKey,
  NewUser,
  NodeRecord,
  RegisterMethod,
} from "../store/types.ts";
import { legacyAuthKeyPrefix } from "../auth/secrets.ts";

/** A problem with the source as a whole: nothing is imported. */
export class MigrateError extends Error {
  override name = "MigrateError";
}

type Row = Record<string, unknown>;

/** The raw tables of a headscale database. */
export interface HeadscaleTables {
  /** "v0.29.2" from database_versions, or "v0.28.x" when only the migration list tells. */
  version: string;
  users: Row[];
  nodes: Row[];
  preAuthKeys: Row[];
  apiKeys: Row[];
  policies: Row[];
}

/** The migration every accepted database has run (pre-auth keys with prefix and bcrypt hash). */
const V028_MIGRATION = "202511131445-node-forced-tags-to-tags";
const TABLES = ["users", "nodes", "pre_auth_keys", "api_keys", "policies", "migrations"] as const;

/** The newest headscale migration this importer knows (v0.29.2). */
const LATEST_KNOWN_MIGRATION = "202606181200-recover-null-tags-node-user-id";

/**
 * Refuses versions other than v0.28.x and v0.29.x, naming the one found. Development builds of
 * headscale record no version: then the migration list tells (`hasVersionTable`: v0.29's schema).
 */
export function checkVersion(
  version: string | null,
  migrationIds: string[],
  hasVersionTable = false,
): string {
  // Dated ids only: a database headscale created from scratch also records gormigrate's
  // SCHEMA_INIT marker, which would sort after every date.
  const dated = migrationIds.filter((id) => /^\d{12}/.test(id));
  const newest = [...dated].sort().at(-1) ?? "";
  if (newest > LATEST_KNOWN_MIGRATION) {
    throw new MigrateError(
      `this database was migrated by a headscale newer than v0.29 (migration ${newest}); only ` +
        "v0.28.x and v0.29.x are imported",
    );
  }
  if (version !== null && version !== "") {
    const m = /^v?(\d+)\.(\d+)\.(\d+)/.exec(version);
    if (!m) throw new MigrateError(`unrecognised headscale database version "${version}"`);
    const [major, minor] = [Number(m[1]), Number(m[2])];
    if (major === 0 && (minor === 28 || minor === 29)) return version;
    if (major === 0 && minor < 28) {
      throw new MigrateError(
        `this database was written by headscale ${version}; only v0.28.x and v0.29.x are ` +
          "imported: upgrade headscale to v0.28 (then v0.29), start it once, then import",
      );
    }
    throw new MigrateError(
      `this database was written by headscale ${version}, newer than the v0.28.x and v0.29.x ` +
        "this importer knows",
    );
  }
  if (migrationIds.includes(V028_MIGRATION)) return hasVersionTable ? "v0.29.x" : "v0.28.x";
  const last = newest || "none";
  throw new MigrateError(
    `this database was written by a headscale older than v0.28 (last migration ${last}); ` +
      "only v0.28.x and v0.29.x are imported: upgrade headscale to v0.28 (then v0.29), start it " +
      "once, then import",
  );
}

/** Reads a headscale SQLite file read-only. */
export function readSqlite(path: string): HeadscaleTables {
  if (!existsSync(path)) throw new MigrateError(`${path} does not exist`);
  let db: DatabaseSync;
  try {
    db = new DatabaseSync(path, { readOnly: true });
  } catch (e) {
    throw new MigrateError(`${path}: cannot open as SQLite: ${(e as Error).message}`);
  }
  try {
    let tables: string[];
    try {
      tables = (db.prepare("SELECT name FROM sqlite_master WHERE type = 'table'").all() as Row[])
        .map((r) => String(r.name));
    } catch (e) {
      throw new MigrateError(`${path} is not a SQLite database: ${(e as Error).message}`);
    }
    const missing = TABLES.filter((t) => !tables.includes(t));
    if (missing.length > 0) {
      throw new MigrateError(
        `${path} is not a headscale database (no ${missing.join(", ")} table)` +
          (tables.includes("schema_version") ? "; it looks like a headscale-deno database" : ""),
      );
    }
    const all = (sql: string) => db.prepare(sql).all() as Row[];
    const version = tables.includes("database_versions")
      ? (all("SELECT version FROM database_versions ORDER BY id DESC LIMIT 1")[0]?.version as
        | string
        | undefined) ?? null
      : null;
    const migrationIds = all("SELECT id FROM migrations").map((r) => String(r.id));
    return {
      version: checkVersion(version, migrationIds, tables.includes("database_versions")),
      users: all("SELECT * FROM users ORDER BY id"),
      nodes: all("SELECT * FROM nodes ORDER BY id"),
      preAuthKeys: all("SELECT * FROM pre_auth_keys ORDER BY id"),
      apiKeys: all("SELECT * FROM api_keys ORDER BY id"),
      policies: all("SELECT * FROM policies ORDER BY id"),
    };
  } catch (e) {
    if (e instanceof MigrateError) throw e;
    throw new MigrateError(`${path}: cannot read: ${(e as Error).message}`);
  } finally {
    db.close();
  }
}

/** Reads a headscale PostgreSQL database (postgres://…) in one read-only transaction. */
export async function readPostgres(url: string): Promise<HeadscaleTables> {
  const where = url.replace(/\/\/[^@/]*@/, "//");
  const sql = postgres(url, { max: 1, onnotice: () => {}, connect_timeout: 10 });
  try {
    return await sql.begin("read only", async (tx) => {
      const tables = (await tx<{ table_name: string }[]>`
        SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()`)
        .map((r) => r.table_name);
      const missing = TABLES.filter((t) => !tables.includes(t));
      if (missing.length > 0) {
        throw new MigrateError(
          `${where} is not a headscale database (no ${missing.join(", ")} table)`,
        );
      }
      const version = tables.includes("database_versions")
        ? (await tx`SELECT version FROM database_versions ORDER BY id DESC LIMIT 1`)[0]?.version ??
          null
        : null;
      const migrationIds = (await tx`SELECT id FROM migrations`).map((r) => String(r.id));
      const all = async (table: string) => [...await tx`SELECT * FROM ${tx(table)} ORDER BY id`];
      return {
        version: checkVersion(version, migrationIds, tables.includes("database_versions")),
        users: await all("users"),
        nodes: await all("nodes"),
        preAuthKeys: await all("pre_auth_keys"),
        apiKeys: await all("api_keys"),
        policies: await all("policies"),
      };
    });
  } catch (e) {
    if (e instanceof MigrateError) throw e;
    throw new MigrateError(`${where}: cannot read: ${(e as Error).message}`);
  } finally {
    await sql.end({ timeout: 1 });
  }
}

export function readHeadscale(source: string): Promise<HeadscaleTables> {
  return /^postgres(ql)?:\/\//.test(source)
    ? readPostgres(source)
    : Promise.resolve(readSqlite(source));
}

// ---- rows → records ---------------------------------------------------------------------------

/** A row that cannot be imported, and why. */
export interface Skipped {
  table: string;
  id: number;
  what: string;
  reason: string;
}

/** A pre-auth key whose secret we hold in plain text (older headscale) gets hashed on import. */
export type PlannedPreAuthKey = NewPreAuthKey & { id: number; plaintext?: string };

export interface ImportPlan {
  version: string;
  users: (NewUser & { id: number })[];
  nodes: NodeRecord[];
  preAuthKeys: PlannedPreAuthKey[];
  apiKeys: (NewApiKey & { id: number })[];
  policy: string | null;
  skipped: Skipped[];
}

const str = (v: unknown): string => v === null || v === undefined ? "" : String(v);

/** gorm's SQLite datetime text ("2025-01-02 03:04:05.123456789+00:00") or a Date. */
export function parseTime(v: unknown): Date | null {
  if (v === null || v === undefined || v === "") return null;
  if (v instanceof Date) return isNaN(v.getTime()) || v.getUTCFullYear() <= 1 ? null : v;
  const m =
    /^(\d{4})-(\d\d)-(\d\d)[ T](\d\d):(\d\d):(\d\d)(?:\.(\d+))?\s*(Z|[+-]\d\d:?\d\d)?(?: [A-Z]+)?$/
      .exec(String(v).trim());
  if (!m) throw new Error(`unreadable time ${JSON.stringify(v)}`);
  const frac = (m[7] ?? "0").slice(0, 3).padEnd(3, "0");
  const zone = !m[8] || m[8] === "Z" ? "Z" : m[8].replace(/^([+-]\d\d)(\d\d)$/, "$1:$2");
  const d = new Date(`${m[1]}-${m[2]}-${m[3]}T${m[4]}:${m[5]}:${m[6]}.${frac}${zone}`);
  if (isNaN(d.getTime())) throw new Error(`unreadable time ${JSON.stringify(v)}`);
  // Go's zero time means "not set".
  return d.getUTCFullYear() <= 1 ? null : d;
}

function json<T>(v: unknown, fallback: T): T {
  if (v === null || v === undefined || v === "") return fallback;
  if (typeof v !== "string") return v as T;
  const parsed = JSON.parse(v);
  return parsed === null ? fallback : parsed;
}

function bool(v: unknown): boolean {
  return v === true || v === 1 || v === 1n || v === "1" || v === "true" || v === "t";
}

function text(v: unknown): string {
  if (v instanceof Uint8Array) return new TextDecoder().decode(v);
  return str(v);
}

function id(v: unknown): number {
  return Number(v);
}

const REGISTER_METHODS: RegisterMethod[] = ["authkey", "cli", "oidc"];

/** Turns headscale's rows into records; rows that cannot be taken go to `skipped`. */
export function planImport(t: HeadscaleTables, now = new Date()): ImportPlan {
  const skipped: Skipped[] = [];
  const skip = (table: string, row: Row, what: string, reason: string) =>
    skipped.push({ table, id: id(row.id), what, reason });

  const users: ImportPlan["users"] = [];
  for (const r of t.users) {
    if (r.deleted_at) {
      skip("users", r, str(r.name), "deleted in headscale");
      continue;
    }
    const providerId = str(r.provider_identifier);
    users.push({
      id: id(r.id),
      name: str(r.name),
      displayName: str(r.display_name),
      email: str(r.email),
      providerId,
      provider: providerId === "" ? "" : str(r.provider) || "oidc",
      profilePicUrl: str(r.profile_pic_url),
      createdAt: parseTime(r.created_at) ?? now,
    });
  }
  const userIds = new Set(users.map((u) => u.id));

  const preAuthKeys: PlannedPreAuthKey[] = [];
  for (const r of t.preAuthKeys) {
    const prefix = str(r.prefix);
    const hash = text(r.hash);
    const legacy = str(r.key);
    const tags = json<string[]>(r.tags, []);
    // A tagged key's user only says who created it (headscale v0.29): its nodes belong to tags.
    const userId = tags.length > 0 || r.user_id === null || r.user_id === undefined
      ? null
      : id(r.user_id);
    const base = {
      id: id(r.id),
      userId,
      reusable: bool(r.reusable),
      ephemeral: bool(r.ephemeral),
      used: bool(r.used),
      tags,
      expiration: parseTime(r.expiration),
      createdAt: parseTime(r.created_at) ?? now,
    };
    if (userId !== null && !userIds.has(userId)) {
      skip("pre_auth_keys", r, prefix || "(legacy)", `its user ${userId} is not imported`);
      continue;
    }
    if (base.userId === null && base.tags.length === 0) {
      skip("pre_auth_keys", r, prefix || "(legacy)", "neither a user nor tags");
      continue;
    }
    if (prefix !== "" && /^\$2[aby]\$/.test(hash)) {
      preAuthKeys.push({ ...base, prefix, hash });
    } else if (prefix === "" && /^[0-9a-f]{48}$/.test(legacy)) {
      // Older headscale kept the key in plain text: it keeps working, stored hashed from now on.
      preAuthKeys.push({
        ...base,
        prefix: legacyAuthKeyPrefix(legacy),
        hash: "",
        plaintext: legacy,
      });
    } else {
      skip("pre_auth_keys", r, prefix || "(legacy)", "neither a bcrypt hash nor a legacy key");
    }
  }
  const keyIds = new Map(preAuthKeys.map((k) => [k.id, k]));

  const nodes: NodeRecord[] = [];
  for (const r of t.nodes) {
    const name = str(r.given_name) || str(r.hostname);
    if (r.deleted_at) {
      skip("nodes", r, name, "deleted in headscale");
      continue;
    }
    try {
      const tags = json<string[]>(r.tags, []);
      const userId = r.user_id === null || r.user_id === undefined ? null : id(r.user_id);
      if (tags.length === 0 && (userId === null || !userIds.has(userId))) {
        skip("nodes", r, name, userId === null ? "no owner and no tags" : `user ${userId} is gone`);
        continue;
      }
      const authKeyId = r.auth_key_id === null || r.auth_key_id === undefined
        ? null
        : id(r.auth_key_id);
      const key = authKeyId === null ? undefined : keyIds.get(authKeyId);
      const method = str(r.register_method) as RegisterMethod;
      const endpoints = json<string[]>(r.endpoints, []);
      nodes.push({
        id: id(r.id),
        machineKey: str(r.machine_key),
        nodeKey: str(r.node_key),
        discoKey: str(r.disco_key),
        ipv4: str(r.ipv4) || null,
        ipv6: str(r.ipv6) || null,
        hostname: str(r.hostname),
        givenName: str(r.given_name),
        // A tagged node belongs to its tags (v0.28 could still carry the creating user).
        userId: tags.length > 0 ? null : userId,
        tags,
        authKeyId: key ? authKeyId : null,
        registerMethod: REGISTER_METHODS.includes(method) ? method : "unspecified",
        ephemeral: key?.ephemeral ?? false,
        hostinfo: json<Record<string, unknown> | null>(r.host_info, null),
        endpoints: endpoints.map(String),
        approvedRoutes: json<string[]>(r.approved_routes, []),
        expiry: parseTime(r.expiry),
        lastSeen: parseTime(r.last_seen),
        createdAt: parseTime(r.created_at) ?? now,
        updatedAt: parseTime(r.updated_at) ?? now,
      });
    } catch (e) {
      skip("nodes", r, name, (e as Error).message);
    }
  }
  for (const n of nodes) {
    if (!/^mkey:[0-9a-f]{64}$/.test(n.machineKey) || !/^nodekey:[0-9a-f]{64}$/.test(n.nodeKey)) {
      skip("nodes", { id: n.id }, n.givenName, "missing or malformed machine or node key");
    }
  }
  const badNodes = new Set(skipped.filter((s) => s.table === "nodes").map((s) => s.id));

  const apiKeys: ImportPlan["apiKeys"] = [];
  for (const r of t.apiKeys) {
    const prefix = str(r.prefix);
    const hash = text(r.hash);
    if (!/^\$2[aby]\$/.test(hash) || prefix === "") {
      skip("api_keys", r, prefix, "not a bcrypt-hashed key");
      continue;
    }
    apiKeys.push({
      id: id(r.id),
      prefix,
      hash,
      expiration: parseTime(r.expiration),
      lastSeen: parseTime(r.last_seen),
      createdAt: parseTime(r.created_at) ?? now,
    });
  }

  const live = t.policies.filter((p) => !p.deleted_at && str(p.data).trim() !== "");
  return {
    version: t.version,
    users,
    nodes: nodes.filter((n) => !badNodes.has(n.id)),
    preAuthKeys,
    apiKeys,
    policy: live.length > 0 ? str(live[live.length - 1].data) : null,
    skipped,
  };
}

/** The dry run's report: counts, then every row that cannot be taken. */
export function describePlan(plan: ImportPlan): string {
  const lines = [
    `headscale database ${plan.version}:`,
    `  users:         ${plan.users.length}`,
    `  nodes:         ${plan.nodes.length} (${
      plan.nodes.filter((n) => n.tags.length).length
    } tagged)`,
    `  pre-auth keys: ${plan.preAuthKeys.length}`,
    `  API keys:      ${plan.apiKeys.length}`,
    `  policy:        ${plan.policy === null ? "none in the database" : "yes (database mode)"}`,
  ];
  if (plan.skipped.length === 0) lines.push("every row can be imported");
  else {
    lines.push(`${plan.skipped.length} row(s) cannot be imported:`);
    for (const s of plan.skipped) {
      lines.push(`  ${s.table} id ${s.id} (${s.what || "unnamed"}): ${s.reason}`);
    }
  }
  return lines.join("\n");
}
