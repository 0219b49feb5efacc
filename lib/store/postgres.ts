/**
 * The PostgreSQL store, on `npm:postgres` (postgres.js). Queries are prepared and cached per
 * connection by the driver; operations on several rows run in `sql.begin` transactions. Every
 * write has committed when its promise resolves. A server that is down, refusing connections,
 * read-only or out of disk becomes StoreUnavailableError naming the database; the driver
 * reconnects by itself, so writes succeed again once the server is back.
 */
import postgres from "postgres";
import { checkDate, checkId } from "./codec.ts";
import { notFound, uniqueConflict, userOwnsNodes } from "./errors.ts";
import { asUnavailable, postgresFault } from "./faults.ts";
import {
  assertKnownVersion,
  assertNoForeignTables,
  type Migration,
  MIGRATIONS,
  OWN_TABLES,
  pendingMigrations,
} from "./migrations.ts";
import { RowStore } from "./row_store.ts";
import {
  type Dialect,
  nodeFromRow,
  nodeParams,
  nodeSessionParams,
  type Params as RowParams,
  type Row,
  type Table,
} from "./rows.ts";
import {
  type NewNode,
  type NodeRecord,
  type Store,
  StoreConflictError,
  StoreNotFoundError,
} from "./types.ts";

export interface PostgresOptions {
  /** Host name, or a directory holding the server's Unix socket (starts with "/"). */
  host: string;
  port: number;
  name: string;
  user: string;
  pass: string;
  /** headscale's `ssl` setting: "false"/"disable", "true"/"require", "prefer", "allow", "verify-full". */
  ssl: string;
  maxOpenConns: number;
  /** Schema the tables live in (the connection's search_path); the user's default otherwise. */
  schema?: string;
  /** Only for tests of the upgrade path; the real list otherwise. */
  migrations?: readonly Migration[];
}

type Sql = postgres.Sql<{ bigint: number }>;
type Tx = postgres.TransactionSql<{ bigint: number }>;
type Params = RowParams<Date | boolean>;

const SSL_MODES: Record<string, false | "require" | "prefer" | "allow" | "verify-full"> = {
  "": false,
  false: false,
  disable: false,
  true: "require",
  require: "require",
  prefer: "prefer",
  allow: "allow",
  "verify-full": "verify-full",
};

/** The driver's ssl setting for headscale's `database.postgres.ssl` value. */
export function sslMode(value: string): false | "require" | "prefer" | "allow" | "verify-full" {
  const mode = SSL_MODES[value.trim().toLowerCase()];
  if (mode === undefined) {
    throw new Error(
      `database.postgres.ssl ${JSON.stringify(value)} is not one of ${
        Object.keys(SSL_MODES).filter(Boolean).join(", ")
      }`,
    );
  }
  return mode;
}

const SCHEMA_NAME = /^[a-z_][a-z0-9_]{0,62}$/;

/** Creates the connection pool (connections open on first use); does not migrate. */
export function openPostgresStore(options: PostgresOptions): PostgresStore {
  if (options.schema !== undefined && !SCHEMA_NAME.test(options.schema)) {
    throw new Error(`postgres schema name ${JSON.stringify(options.schema)} is not a plain name`);
  }
  const socketDir = options.host.startsWith("/") ? options.host : undefined;
  const sql = postgres({
    host: socketDir ? undefined : options.host || undefined,
    port: options.port,
    path: socketDir ? `${socketDir}/.s.PGSQL.${options.port}` : undefined,
    database: options.name,
    user: options.user || undefined,
    password: options.pass || undefined,
    ssl: sslMode(options.ssl),
    max: options.maxOpenConns > 0 ? options.maxOpenConns : 10,
    connect_timeout: 10,
    fetch_types: false,
    // "relation already exists, skipping" and the like are not worth a line on stdout.
    onnotice: () => {},
    connection: {
      application_name: "headscale-deno",
      ...(options.schema ? { search_path: options.schema } : {}),
    },
    // Ids are bigint columns; JavaScript numbers hold them exactly up to 2^53.
    types: {
      bigint: {
        to: 20,
        from: [20],
        serialize: (x: number) => String(x),
        parse: (x: string) => Number(x),
      },
    },
  });
  return new PostgresStore(sql, options.migrations ?? MIGRATIONS, describePostgres(options));
}

/** Names the database in errors, never with its password. */
export function describePostgres(
  options: Pick<PostgresOptions, "user" | "host" | "port" | "name">,
) {
  const { user, host, port, name } = options;
  return `the PostgreSQL database ${name} at ${user ? `${user}@` : ""}${host}:${port}`;
}

// ---- how PostgreSQL holds values --------------------------------------------------------------

/** Timestamps as Date (timestamptz columns), booleans as bool. */
const POSTGRES: Dialect<Date | boolean> = {
  time: checkDate,
  bool: (b) => b,
  readBool: (v) => v === true,
};

// ---- errors ---------------------------------------------------------------------------------

interface PgError extends Error {
  code?: string;
  table_name?: string;
  constraint_name?: string;
}

const UNIQUE_VIOLATION = "23505";
const FOREIGN_KEY_VIOLATION = "23503";
/** Which table a foreign key column points at. */
const REFERENCED: Record<string, string> = { user_id: "users", auth_key_id: "pre_auth_keys" };

/** Maps a constraint violation to a StoreConflictError or StoreNotFoundError naming the field. */
function translate(e: unknown, row: Params): unknown {
  if (e instanceof StoreConflictError || e instanceof StoreNotFoundError) return e;
  const err = e as PgError;
  if (err?.name !== "PostgresError") return e;
  const table = err.table_name ?? "";
  const constraint = err.constraint_name ?? "";
  if (err.code === UNIQUE_VIOLATION) {
    // Constraints are named <table>_<column>_key (migrations.ts), the primary key <table>_pkey.
    const column = constraint === `${table}_pkey`
      ? "id"
      : constraint.replace(`${table}_`, "").replace(/_key$/, "");
    return uniqueConflict(table, column, row);
  }
  if (err.code === FOREIGN_KEY_VIOLATION) {
    const column = constraint.replace(`${table}_`, "").replace(/_fkey$/, "");
    const id = row[column];
    if (REFERENCED[column] && typeof id === "number") return notFound(REFERENCED[column], id);
  }
  return e;
}

// ---- the store ------------------------------------------------------------------------------

export class PostgresStore extends RowStore<Date | boolean> implements Store {
  readonly kind = "postgres";
  protected readonly dialect = POSTGRES;

  constructor(
    private readonly sql: Sql,
    private readonly migrations: readonly Migration[] = MIGRATIONS,
    /** How errors name the database (describePostgres). */
    private readonly label = "the PostgreSQL database",
  ) {
    super();
  }

  /** Runs `fn`, turning a fault (server down, read-only, disk full) into StoreUnavailableError. */
  private async guard<T>(fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (e) {
      throw asUnavailable(e, postgresFault, this.label);
    }
  }

  private async write<T>(row: Params, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (e) {
      throw asUnavailable(translate(e, row), postgresFault, this.label);
    }
  }

  private async databaseVersion(sql: Sql | Tx): Promise<number> {
    const [row] = await sql`SELECT coalesce(max(version), 0)::bigint AS v FROM schema_migrations`;
    return Number(row.v);
  }

  /**
   * Serialises migrators (several servers may start at once) on a lock per schema, held until
   * the transaction ends. Even CREATE TABLE IF NOT EXISTS races without it.
   */
  private async lockMigrations(tx: Tx): Promise<void> {
    await tx`SELECT pg_advisory_xact_lock(hashtext('headscale-deno migrate ' || current_schema()))`;
  }

  async migrate(): Promise<void> {
    await this.guard(() => this.migrateNow());
  }

  private async migrateNow(): Promise<void> {
    await this.sql.begin(async (tx) => {
      await this.lockMigrations(tx);
      await tx`CREATE TABLE IF NOT EXISTS schema_migrations (
        version integer PRIMARY KEY,
        name text NOT NULL,
        applied_at timestamptz NOT NULL
      )`;
    });
    const known = Math.max(0, ...this.migrations.map((m) => m.version));
    const start = await this.databaseVersion(this.sql);
    assertKnownVersion(start, known);
    const existing = await this.sql`SELECT table_name FROM information_schema.tables
      WHERE table_schema = current_schema() AND table_name IN ${this.sql(OWN_TABLES)}`;
    assertNoForeignTables(start, existing.map((r) => String(r.table_name)));
    for (const m of pendingMigrations(start, this.migrations)) {
      await this.sql.begin(async (tx) => {
        await this.lockMigrations(tx);
        // Another server may have done the work while we waited for the lock.
        const now = await this.databaseVersion(tx);
        assertKnownVersion(now, known);
        if (now >= m.version) return;
        await tx.unsafe(m.postgres);
        await tx`INSERT INTO schema_migrations (version, name, applied_at)
          VALUES (${m.version}, ${m.name}, ${new Date()})`;
      });
    }
  }

  async ping(): Promise<void> {
    await this.guard(() => this.sql`SELECT 1`);
  }

  async checkWritable(): Promise<void> {
    await this.guard(() =>
      this.sql`INSERT INTO health_checks (id, checked_at) VALUES (1, ${new Date()})
        ON CONFLICT (id) DO UPDATE SET checked_at = excluded.checked_at`
    );
  }

  async close(): Promise<void> {
    await this.sql.end({ timeout: 5 });
  }

  // ---- one table's rows, by id --------------------------------------------------------------

  protected async listRows(table: Table): Promise<Row[]> {
    return await this.guard(() => this.sql`SELECT * FROM ${this.sql(table)} ORDER BY id`);
  }

  protected async listNewestRows(table: Table, limit: number): Promise<Row[]> {
    return await this.guard(() =>
      this.sql`SELECT * FROM ${this.sql(table)} ORDER BY id DESC LIMIT ${limit}`
    );
  }

  /** Inserts `row` and returns it as stored, id included. */
  protected async insertRow(table: Table, row: Params): Promise<Row> {
    return await this.write(row, async () => {
      const [saved] = await this.sql`INSERT INTO ${this.sql(table)} ${this.sql(row)} RETURNING *`;
      return saved;
    });
  }

  protected async updateRow(table: Table, id: number, row: Params): Promise<void> {
    const result = await this.write(
      row,
      () => this.sql`UPDATE ${this.sql(table)} SET ${this.sql(row)} WHERE id = ${id}`,
    );
    if (result.count === 0) throw notFound(table, id);
  }

  protected async deleteRow(table: Table, id: number): Promise<void> {
    const result = await this.guard(() =>
      this.sql`DELETE FROM ${this.sql(table)} WHERE id = ${id}`
    );
    if (result.count === 0) throw notFound(table, id);
  }

  // ---- users --------------------------------------------------------------------------------

  async deleteUser(id: number): Promise<void> {
    checkId(id, "user id");
    try {
      await this.sql.begin(async (tx) => {
        const [user] = await tx`SELECT id FROM users WHERE id = ${id} FOR UPDATE`;
        if (!user) throw notFound("users", id);
        const [{ n }] = await tx`SELECT count(*) AS n FROM nodes WHERE user_id = ${id}`;
        if (Number(n) > 0) throw userOwnsNodes(id, Number(n));
        await tx`DELETE FROM users WHERE id = ${id}`;
      });
    } catch (e) {
      // A node added for this user between the count and the delete.
      if ((e as PgError).code === FOREIGN_KEY_VIOLATION) throw userOwnsNodes(id, 1);
      throw asUnavailable(e, postgresFault, this.label);
    }
  }

  // ---- nodes --------------------------------------------------------------------------------

  async saveNode(node: NewNode | NodeRecord, useKeyId?: number): Promise<NodeRecord> {
    const existingId = "id" in node && node.id !== undefined ? checkId(node.id, "node id") : null;
    if (useKeyId !== undefined) checkId(useKeyId, "pre-auth key id");
    const row = nodeParams(node, POSTGRES);
    return await this.write(row, () =>
      this.sql.begin(async (tx) => {
        const [saved] = existingId === null
          ? await tx`INSERT INTO nodes ${tx(row)} RETURNING *`
          : await tx`UPDATE nodes SET ${tx(row)} WHERE id = ${existingId} RETURNING *`;
        if (!saved) throw notFound("nodes", existingId ?? 0);
        if (useKeyId !== undefined) {
          // Marks a single-use key used; a reusable key is left alone. NO KEY UPDATE, not UPDATE:
          // the INSERT above holds a KEY SHARE lock on the key's row (the foreign key), and two
          // registrations with one key would each wait for the other's (a deadlock).
          const [key] = await tx`SELECT reusable FROM pre_auth_keys WHERE id = ${useKeyId}
            FOR NO KEY UPDATE`;
          if (!key) throw notFound("pre_auth_keys", useKeyId);
          if (!key.reusable) await tx`UPDATE pre_auth_keys SET used = true WHERE id = ${useKeyId}`;
        }
        return nodeFromRow(saved, POSTGRES);
      }));
  }

  /**
   * Writes what a map session changes (disco key, hostname, hostinfo, endpoints, last seen,
   * updated at) for many nodes in one transaction, as one statement per 1,000 nodes. Other
   * fields, unique ones included, change only through saveNode, so a batch built from an older
   * snapshot cannot undo a rename or a new address, and one node cannot make the whole batch
   * fail. Nodes deleted meanwhile are skipped.
   */
  async updateNodes(nodes: NodeRecord[]): Promise<void> {
    // The last entry for a node wins, as it would with one UPDATE each.
    const latest = new Map(nodes.map((n) => [n.id, nodeSessionParams(n, POSTGRES)]));
    const rows = [...latest.values()];
    if (rows.length === 0) return;
    const chunk = 1000;
    await this.guard(() =>
      this.sql.begin(async (tx) => {
        for (let i = 0; i < rows.length; i += chunk) {
          // Sent as text: a jsonb parameter would make the driver encode the string once more.
          // Dates become ISO-8601 text in JSON, which timestamptz reads back exactly.
          const json = JSON.stringify(rows.slice(i, i + chunk));
          await tx`
          UPDATE nodes AS n SET
            disco_key = v.disco_key,
            hostname = v.hostname,
            hostinfo = v.hostinfo,
            endpoints = v.endpoints,
            last_seen = v.last_seen,
            updated_at = v.updated_at
          FROM jsonb_to_recordset(${json}::text::jsonb) AS v(
            id bigint, disco_key text, hostname text, hostinfo text, endpoints text,
            last_seen timestamptz, updated_at timestamptz
          )
          WHERE n.id = v.id`;
        }
      })
    );
  }

  // ---- policy -------------------------------------------------------------------------------

  async getPolicy(): Promise<string | null> {
    const [row] = await this.guard(() =>
      this.sql`SELECT data FROM policies ORDER BY id DESC LIMIT 1`
    );
    return row ? String(row.data) : null;
  }

  async setPolicy(data: string): Promise<void> {
    if (typeof data !== "string") throw new TypeError("policy data must be a string");
    await this.guard(() =>
      this.sql`INSERT INTO policies (data, created_at) VALUES (${data}, ${new Date()})`
    );
  }
}
