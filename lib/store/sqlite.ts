/**
 * The SQLite store, on `node:sqlite` (built into Deno, works in a compiled binary).
 *
 * Durability: WAL with synchronous=FULL. NORMAL would already keep every acknowledged write
 * across a crash of the process (the WAL frames are in the OS page cache before COMMIT returns),
 * but could lose the last transactions on power loss or a kernel crash. FULL adds one fsync of
 * the WAL per commit, so an acknowledged registration survives that too. It costs little here:
 * hard writes (registrations, key and user changes) are rare and map-session updates arrive in
 * batches, one transaction each. Without WAL the rollback journal is used, also with FULL.
 *
 * Every write runs in an explicit transaction ended by COMMIT, never in autocommit mode:
 * `StatementSync.get()` on an `INSERT … RETURNING` in autocommit mode returns the row and drops
 * the commit's error (disk full, read-only file), which once let the server acknowledge users
 * that were never stored. An explicit COMMIT reports it. Faults (full, read-only, I/O, locked)
 * become StoreUnavailableError naming the file.
 *
 * DatabaseSync is synchronous: each method runs to completion before its promise settles, so no
 * two transactions interleave within the process. busy_timeout covers other processes (the CLI
 * or a backup) holding the write lock for a moment.
 *
 * A new database file is created readable by its owner only (0600): it holds node keys and
 * e-mail addresses. SQLite gives the -wal and -shm files the same mode.
 */
// Every method is async, with nothing to await, so that a synchronous throw becomes a rejection.
// deno-lint-ignore-file require-await
import { closeSync, existsSync, mkdirSync, openSync } from "node:fs";
import { dirname } from "node:path";
import { DatabaseSync, type StatementSync } from "node:sqlite";
import { checkId, encodeTime } from "./codec.ts";
import { notFound, uniqueConflict, userOwnsNodes } from "./errors.ts";
import { asUnavailable, sqliteFault } from "./faults.ts";
import type { StoreFault } from "./types.ts";
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

export interface SqliteOptions {
  path: string;
  writeAheadLog: boolean;
  /** How long to wait for another process's write lock, in ms. */
  busyTimeoutMs?: number;
  /** Only for tests of the upgrade path; the real list otherwise. */
  migrations?: readonly Migration[];
}

type Params = RowParams<string | number>;

const NODE_COLUMNS = [
  "machine_key",
  "node_key",
  "disco_key",
  "ipv4",
  "ipv6",
  "hostname",
  "given_name",
  "user_id",
  "tags",
  "auth_key_id",
  "register_method",
  "ephemeral",
  "hostinfo",
  "endpoints",
  "approved_routes",
  "expiry",
  "last_seen",
  "created_at",
  "updated_at",
];
/** What a map session changes; updateNodes writes only these (see updateNodes). */
const NODE_SESSION_COLUMNS = [
  "disco_key",
  "hostname",
  "hostinfo",
  "endpoints",
  "last_seen",
  "updated_at",
];
const USER_COLUMNS = [
  "name",
  "display_name",
  "email",
  "provider_id",
  "provider",
  "profile_pic_url",
  "created_at",
];
const PRE_AUTH_KEY_COLUMNS = [
  "prefix",
  "hash",
  "user_id",
  "reusable",
  "ephemeral",
  "used",
  "tags",
  "expiration",
  "created_at",
];
const API_KEY_COLUMNS = ["prefix", "hash", "expiration", "last_seen", "created_at"];
const ADMIN_SESSION_COLUMNS = [
  "prefix",
  "hash",
  "identity",
  "display_name",
  "client_addr",
  "created_at",
  "expires_at",
];
const AUDIT_EVENT_COLUMNS = ["at", "actor", "action", "target", "details", "client_addr"];

function insertSql(table: string, columns: string[]): string {
  const values = columns.map((c) => `$${c}`).join(", ");
  return `INSERT INTO ${table} (${columns.join(", ")}) VALUES (${values}) RETURNING *`;
}

function updateSql(table: string, columns: string[]): string {
  const sets = columns.map((c) => `${c} = $${c}`).join(", ");
  return `UPDATE ${table} SET ${sets} WHERE id = $id`;
}

/** The four statements every record table has: by id, with named parameters for the row. */
function tableStatements(db: DatabaseSync, table: Table, columns: string[]) {
  return {
    list: db.prepare(`SELECT * FROM ${table} ORDER BY id`),
    newest: db.prepare(`SELECT * FROM ${table} ORDER BY id DESC LIMIT ?`),
    insert: db.prepare(insertSql(table, columns)),
    update: db.prepare(updateSql(table, columns)),
    remove: db.prepare(`DELETE FROM ${table} WHERE id = ?`),
  };
}

/** The statements every call reuses; prepared once the schema exists. */
function prepareStatements(db: DatabaseSync) {
  const p = (sql: string) => db.prepare(sql);
  return {
    users: tableStatements(db, "users", USER_COLUMNS),
    nodes: tableStatements(db, "nodes", NODE_COLUMNS),
    pre_auth_keys: tableStatements(db, "pre_auth_keys", PRE_AUTH_KEY_COLUMNS),
    api_keys: tableStatements(db, "api_keys", API_KEY_COLUMNS),
    admin_sessions: tableStatements(db, "admin_sessions", ADMIN_SESSION_COLUMNS),
    audit_events: tableStatements(db, "audit_events", AUDIT_EVENT_COLUMNS),

    userExists: p("SELECT 1 AS found FROM users WHERE id = ?"),
    countUserNodes: p("SELECT count(*) AS n FROM nodes WHERE user_id = ?"),
    nodeById: p("SELECT * FROM nodes WHERE id = ?"),
    updateNodeSession: p(updateSql("nodes", NODE_SESSION_COLUMNS)),
    preAuthKeyReusable: p("SELECT reusable FROM pre_auth_keys WHERE id = ?"),
    markPreAuthKeyUsed: p("UPDATE pre_auth_keys SET used = 1 WHERE id = ?"),
    latestPolicy: p("SELECT data FROM policies ORDER BY id DESC LIMIT 1"),
    insertPolicy: p("INSERT INTO policies (data, created_at) VALUES (?, ?)"),
  };
}
type Statements = ReturnType<typeof prepareStatements>;

// ---- how SQLite holds values ------------------------------------------------------------------

/** Timestamps as ISO-8601 UTC text (sorts and round-trips exactly), booleans as 0/1. */
const SQLITE: Dialect<string | number> = {
  time: encodeTime,
  bool: (b) => b ? 1 : 0,
  readBool: (v) => v === 1,
};

// ---- the store ------------------------------------------------------------------------------

interface SqliteError extends Error {
  errcode?: number;
}

const UNIQUE_FAILED = /^UNIQUE constraint failed: (\w+)\.(\w+)/;
const FOREIGN_KEY_FAILED = /FOREIGN KEY constraint failed/;

/** Journal, durability (see the top of this file), foreign keys and lock waiting. */
export function configureConnection(
  db: DatabaseSync,
  options: Pick<SqliteOptions, "writeAheadLog" | "busyTimeoutMs">,
): void {
  db.exec(`PRAGMA busy_timeout = ${Math.max(0, Math.trunc(options.busyTimeoutMs ?? 5000))}`);
  db.exec(`PRAGMA journal_mode = ${options.writeAheadLog ? "WAL" : "DELETE"}`);
  db.exec("PRAGMA synchronous = FULL");
  db.exec("PRAGMA foreign_keys = ON");
}

/** Creates an empty database file readable by its owner only; an existing file is left alone. */
function createPrivateFile(path: string): void {
  try {
    closeSync(openSync(path, "wx", 0o600));
  } catch (e) {
    if ((e as { code?: string }).code !== "EEXIST") throw e;
  }
}

/** Opens (creating if needed) the database file and sets the connection up; does not migrate. */
export function openSqliteStore(options: SqliteOptions): SqliteStore {
  const { path } = options;
  if (path !== ":memory:" && !path.startsWith("file:")) {
    mkdirSync(dirname(path), { recursive: true });
    try {
      createPrivateFile(path);
    } catch (e) {
      throw new Error(`cannot create the SQLite database ${path}: ${(e as Error).message}`);
    }
  }
  let db: DatabaseSync;
  try {
    db = new DatabaseSync(path, { enableForeignKeyConstraints: true });
  } catch (e) {
    throw new Error(`cannot open the SQLite database ${path}: ${(e as Error).message}`);
  }
  try {
    configureConnection(db, options);
  } catch (e) {
    db.close();
    throw new Error(`cannot set up the SQLite database ${path}: ${(e as Error).message}`);
  }
  return new SqliteStore(db, options.migrations ?? MIGRATIONS, path);
}

export class SqliteStore extends RowStore<string | number> implements Store {
  readonly kind = "sqlite";
  protected readonly dialect = SQLITE;
  private statements: Statements | undefined;
  private healthCheck: StatementSync | undefined;
  private closed = false;

  constructor(
    private readonly db: DatabaseSync,
    private readonly migrations: readonly Migration[] = MIGRATIONS,
    /** The file, for error messages and for telling a read-only file from a failing disk. */
    private readonly path = ":memory:",
  ) {
    super();
  }

  private get label(): string {
    return `the SQLite database ${this.path}`;
  }

  /**
   * SQLite reports a write refused by the file system (an immutable or read-only file) as a
   * plain I/O error; asking the file system tells an admin which of the two to fix.
   */
  private fault = (e: unknown): StoreFault | null => {
    const fault = sqliteFault(e);
    if (fault !== "io-error" || this.path === ":memory:" || this.path.startsWith("file:")) {
      return fault;
    }
    if (!existsSync(this.path)) return "unreachable";
    // Opening for writing (nothing is written) is what the kernel refuses for an immutable file
    // or a read-only mount, for root too; access(2)-style checks do not see the immutable flag.
    for (const file of [this.path, `${this.path}-wal`]) {
      try {
        if (existsSync(file)) closeSync(openSync(file, "r+"));
      } catch {
        return "read-only";
      }
    }
    return fault;
  };

  private get q(): Statements {
    this.statements ??= prepareStatements(this.db);
    return this.statements;
  }

  /**
   * Runs `fn` in one write transaction and commits; rolls back and rethrows if `fn` or the COMMIT
   * throws (SQLite may already have rolled back after a failed COMMIT).
   */
  private transaction<T>(fn: () => T): T {
    this.db.exec("BEGIN IMMEDIATE");
    try {
      const result = fn();
      this.db.exec("COMMIT");
      return result;
    } catch (e) {
      try {
        if (this.db.isTransaction) this.db.exec("ROLLBACK");
      } catch {
        // The original error says more; SQLite rolls back by itself on close or next BEGIN.
      }
      throw e;
    }
  }

  /** Runs `fn`, turning a fault (disk full, read-only, …) into StoreUnavailableError. */
  private guard<T>(fn: () => T): T {
    try {
      return fn();
    } catch (e) {
      throw asUnavailable(e, this.fault, this.label);
    }
  }

  /** Maps a constraint failure to a StoreConflictError or StoreNotFoundError naming the field. */
  private translate(e: unknown, table: string, row: Params): unknown {
    if (e instanceof StoreConflictError || e instanceof StoreNotFoundError) return e;
    const err = e as SqliteError;
    const unique = UNIQUE_FAILED.exec(err?.message ?? "");
    if (unique) return uniqueConflict(unique[1], unique[2], row);
    if (err?.errcode === 787 || FOREIGN_KEY_FAILED.test(err?.message ?? "")) {
      return this.explainMissingReference(table, row) ?? e;
    }
    return e;
  }

  /** SQLite does not say which foreign key failed; look at what the row refers to. */
  private explainMissingReference(table: string, row: Params): StoreNotFoundError | undefined {
    const userId = row.user_id;
    if (typeof userId === "number" && !this.q.userExists.get(userId)) {
      return notFound("users", userId);
    }
    const keyId = row.auth_key_id;
    if (table === "nodes" && typeof keyId === "number" && !this.q.preAuthKeyReusable.get(keyId)) {
      return notFound("pre_auth_keys", keyId);
    }
    return undefined;
  }

  /** Runs `fn` in a transaction; constraint failures name the field, faults the database. */
  private write<T>(table: Table, row: Params, fn: () => T): T {
    return this.guard(() => {
      try {
        return this.transaction(fn);
      } catch (e) {
        throw this.translate(e, table, row);
      }
    });
  }

  // ---- one table's rows, by id --------------------------------------------------------------

  protected async listRows(table: Table): Promise<Row[]> {
    return this.guard(() => this.q[table].list.all());
  }

  protected async listNewestRows(table: Table, limit: number): Promise<Row[]> {
    return this.guard(() => this.q[table].newest.all(limit));
  }

  /** Inserts `row` and returns it as stored, id included. */
  protected async insertRow(table: Table, row: Params): Promise<Row> {
    return this.write(table, row, () => this.q[table].insert.get(row) as Row);
  }

  protected async updateRow(table: Table, id: number, row: Params): Promise<void> {
    const withId = { ...row, id };
    const result = this.write(table, withId, () => this.q[table].update.run(withId));
    if (result.changes === 0) throw notFound(table, id);
  }

  protected async deleteRow(table: Table, id: number): Promise<void> {
    const result = this.write(table, { id }, () => this.q[table].remove.run(id));
    if (result.changes === 0) throw notFound(table, id);
  }

  private databaseVersion(): number {
    const row = this.db.prepare("SELECT coalesce(max(version), 0) AS v FROM schema_migrations")
      .get() as Row;
    return Number(row.v);
  }

  async migrate(): Promise<void> {
    this.guard(() => this.migrateNow());
  }

  private migrateNow(): void {
    this.db.exec(`CREATE TABLE IF NOT EXISTS schema_migrations (
      version INTEGER PRIMARY KEY,
      name TEXT NOT NULL,
      applied_at TEXT NOT NULL
    )`);
    const known = Math.max(0, ...this.migrations.map((m) => m.version));
    const start = this.databaseVersion();
    assertKnownVersion(start, known);
    const existing = this.db.prepare(
      `SELECT name FROM sqlite_master WHERE type = 'table' AND name IN (${
        OWN_TABLES.map(() => "?").join(", ")
      })`,
    ).all(...OWN_TABLES).map((r) => String(r.name));
    assertNoForeignTables(start, existing);
    for (const m of pendingMigrations(start, this.migrations)) {
      this.transaction(() => {
        // Another process may have migrated while we waited for the write lock.
        const now = this.databaseVersion();
        assertKnownVersion(now, known);
        if (now >= m.version) return;
        this.db.exec(m.sqlite);
        this.db.prepare(
          "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
        )
          .run(m.version, m.name, new Date().toISOString());
      });
    }
    this.statements = undefined;
    this.healthCheck = undefined;
  }

  async ping(): Promise<void> {
    this.guard(() => this.db.prepare("SELECT 1").get());
  }

  async checkWritable(): Promise<void> {
    this.guard(() => {
      // Prepared apart from the others: a database migrated only by a test's own list lacks it.
      this.healthCheck ??= this.db.prepare(
        `INSERT INTO health_checks (id, checked_at) VALUES (1, ?)
         ON CONFLICT (id) DO UPDATE SET checked_at = excluded.checked_at`,
      );
      const stmt = this.healthCheck;
      this.transaction(() => stmt.run(new Date().toISOString()));
    });
  }

  async close(): Promise<void> {
    if (!this.closed) {
      this.closed = true;
      this.statements = undefined;
      this.healthCheck = undefined;
      this.db.close();
    }
  }

  // ---- users --------------------------------------------------------------------------------

  async deleteUser(id: number): Promise<void> {
    checkId(id, "user id");
    this.guard(() =>
      this.transaction(() => {
        if (!this.q.userExists.get(id)) throw notFound("users", id);
        const owned = Number((this.q.countUserNodes.get(id) as Row).n);
        if (owned > 0) throw userOwnsNodes(id, owned);
        this.q.users.remove.run(id);
      })
    );
  }

  // ---- nodes --------------------------------------------------------------------------------

  async saveNode(node: NewNode | NodeRecord, useKeyId?: number): Promise<NodeRecord> {
    const existingId = "id" in node && node.id !== undefined ? checkId(node.id, "node id") : null;
    if (useKeyId !== undefined) checkId(useKeyId, "pre-auth key id");
    const row = nodeParams(node, SQLITE);
    return this.write("nodes", row, () => {
      let saved: Row;
      if (existingId === null) {
        saved = this.q.nodes.insert.get(row) as Row;
      } else {
        if (this.q.nodes.update.run({ ...row, id: existingId }).changes === 0) {
          throw notFound("nodes", existingId);
        }
        saved = this.q.nodeById.get(existingId) as Row;
      }
      if (useKeyId !== undefined) this.markKeyUsed(useKeyId);
      return nodeFromRow(saved, SQLITE);
    });
  }

  /** Marks a single-use key used; a reusable key is left alone. */
  private markKeyUsed(id: number): void {
    const key = this.q.preAuthKeyReusable.get(id) as Row | undefined;
    if (!key) throw notFound("pre_auth_keys", id);
    if (key.reusable !== 1) this.q.markPreAuthKeyUsed.run(id);
  }

  /**
   * Writes what a map session changes (disco key, hostname, hostinfo, endpoints, last seen,
   * updated at) for many nodes in one transaction. Other fields, unique ones included, change
   * only through saveNode, so a batch built from an older snapshot cannot undo a rename or a
   * new address, and one node cannot make the whole batch fail. Nodes deleted meanwhile are
   * skipped.
   */
  async updateNodes(nodes: NodeRecord[]): Promise<void> {
    if (nodes.length === 0) return;
    const rows = nodes.map((n) => nodeSessionParams(n, SQLITE));
    this.guard(() => {
      const stmt = this.q.updateNodeSession;
      this.transaction(() => {
        for (const row of rows) stmt.run(row);
      });
    });
  }

  // ---- policy -------------------------------------------------------------------------------

  async getPolicy(): Promise<string | null> {
    const row = this.guard(() => this.q.latestPolicy.get()) as Row | undefined;
    return row ? String(row.data) : null;
  }

  async setPolicy(data: string): Promise<void> {
    if (typeof data !== "string") throw new TypeError("policy data must be a string");
    this.guard(() =>
      this.transaction(() => this.q.insertPolicy.run(data, new Date().toISOString()))
    );
  }
}
