/**
 * Turns a violated constraint into the error the rest of the server understands, with a message
 * that names the field (and the value, unless it is a secret's lookup prefix). Both backends
 * report a violation as (table, column); the value comes from the row they tried to write.
 */
import { StoreConflictError, StoreNotFoundError } from "./types.ts";

const UNIQUE_MESSAGES: Record<string, (value: unknown) => string> = {
  "users.name": (v) => `user name ${JSON.stringify(v)} already exists`,
  "nodes.machine_key": (v) => `machine key ${v} already in use`,
  "nodes.node_key": (v) => `node key ${v} already in use`,
  "nodes.ipv4": (v) => `ipv4 ${v} already in use`,
  "nodes.ipv6": (v) => `ipv6 ${v} already in use`,
  "nodes.given_name": (v) => `given name ${JSON.stringify(v)} already in use`,
  "pre_auth_keys.prefix": () => "pre-auth key prefix already exists",
  "api_keys.prefix": () => "API key prefix already exists",
};

const ENTITY: Record<string, string> = {
  users: "user",
  nodes: "node",
  pre_auth_keys: "pre-auth key",
  api_keys: "API key",
  policies: "policy",
};

/** The error for a unique constraint on `table.column`, given the row that was written. */
export function uniqueConflict(
  table: string,
  column: string,
  row: Record<string, unknown>,
): StoreConflictError {
  const message = UNIQUE_MESSAGES[`${table}.${column}`];
  const duplicate = { duplicate: true };
  if (message) return new StoreConflictError(message(row[column]), duplicate);
  if (column === "id") {
    return new StoreConflictError(
      `${ENTITY[table] ?? table} id ${row.id} already exists`,
      duplicate,
    );
  }
  return new StoreConflictError(`${table}.${column} already exists`, duplicate);
}

export function notFound(table: string, id: number): StoreNotFoundError {
  return new StoreNotFoundError(`${ENTITY[table] ?? table} ${id} not found`);
}

export function userOwnsNodes(id: number, count: number): StoreConflictError {
  return new StoreConflictError(
    `user ${id} still owns ${count} node${count === 1 ? "" : "s"}; delete or move them first`,
  );
}
