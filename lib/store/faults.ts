/**
 * Recognises the driver errors that mean "the database cannot do this now" (full, read-only,
 * unreachable, locked, I/O error) and turns them into StoreUnavailableError, so callers can
 * answer 503 with a message an admin can act on instead of a bare internal error. Anything not
 * recognised (a bug, a constraint) is left as it is.
 */
import { type StoreFault, StoreUnavailableError } from "./types.ts";

/** SQLite's primary result codes (errcode & 0xff) and its error strings, for exec() errors. */
const SQLITE_CODES: Record<number, StoreFault> = {
  3: "read-only", // SQLITE_PERM
  5: "busy", // SQLITE_BUSY
  6: "busy", // SQLITE_LOCKED
  8: "read-only", // SQLITE_READONLY
  10: "io-error", // SQLITE_IOERR
  11: "io-error", // SQLITE_CORRUPT
  13: "full", // SQLITE_FULL
  14: "unreachable", // SQLITE_CANTOPEN
  26: "io-error", // SQLITE_NOTADB
};
const SQLITE_MESSAGES: [RegExp, StoreFault][] = [
  [/database or disk is full/, "full"],
  [/readonly database|access permission denied/, "read-only"],
  [/disk I\/O error|malformed|not a database/, "io-error"],
  [/unable to open database file/, "unreachable"],
  [/database (table )?is locked/, "busy"],
];

/** The fault behind a node:sqlite error, or null when it is something else. */
export function sqliteFault(e: unknown): StoreFault | null {
  const err = e as { errcode?: unknown; message?: unknown } | null;
  if (typeof err?.errcode === "number") {
    const fault = SQLITE_CODES[err.errcode & 0xff];
    if (fault) return fault;
  }
  const message = typeof err?.message === "string" ? err.message : "";
  for (const [pattern, fault] of SQLITE_MESSAGES) if (pattern.test(message)) return fault;
  return null;
}

/** postgres.js connection errors (its own codes and the socket's). */
const PG_CONNECTION_CODES = new Set([
  "CONNECTION_CLOSED",
  "CONNECTION_ENDED",
  "CONNECTION_DESTROYED",
  "CONNECT_TIMEOUT",
  "ECONNREFUSED",
  "ECONNRESET",
  "ENOTFOUND",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "ETIMEDOUT",
  "EPIPE",
  "EAI_AGAIN",
]);

/** The fault behind a postgres.js error (SQLSTATE or connection code), or null. */
export function postgresFault(e: unknown): StoreFault | null {
  const err = e as { code?: unknown; name?: unknown; message?: unknown } | null;
  const code = typeof err?.code === "string" ? err.code : "";
  if (PG_CONNECTION_CODES.has(code)) return "unreachable";
  if (err?.name === "PostgresError") {
    if (code === "53100") return "full"; // disk_full
    if (code === "25006") return "read-only"; // read_only_sql_transaction
    if (code.startsWith("08") || code.startsWith("57P")) return "unreachable"; // connection, shutdown
    if (code.startsWith("53") || code === "40001" || code === "40P01" || code === "55P03") {
      return "busy"; // out of resources, serialization failure, deadlock, lock not available
    }
    if (code.startsWith("58")) return "io-error"; // system error (I/O)
    return null;
  }
  // Deno's own socket errors carry the errno name only in the message on some paths.
  const message = typeof err?.message === "string" ? err.message : "";
  if (/connection refused|connection reset|broken pipe|timed out/i.test(message)) {
    return "unreachable";
  }
  return null;
}

/** `e` as a StoreUnavailableError when `fault` recognises it, else `e` unchanged. */
export function asUnavailable(
  e: unknown,
  fault: (e: unknown) => StoreFault | null,
  database: string,
): unknown {
  if (e instanceof StoreUnavailableError) return e;
  const kind = fault(e);
  if (kind === null) return e;
  const detail = (e as Error)?.message || String(e);
  return new StoreUnavailableError(kind, database, detail, { cause: e });
}
