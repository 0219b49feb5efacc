/**
 * Opens the configured store and brings its schema up to date. The rest of the server depends
 * only on the Store interface (types.ts).
 */
import { describePostgres, openPostgresStore, type PostgresOptions } from "./postgres.ts";
import { openSqliteStore, type SqliteOptions } from "./sqlite.ts";
import { type Store, StoreVersionError } from "./types.ts";

export * from "./types.ts";
export { LATEST_VERSION } from "./migrations.ts";

/** The `database` section of the configuration (extra keys such as `debug` are ignored). */
export type StoreConfig =
  | { type: "sqlite"; sqlite: SqliteOptions }
  | { type: "postgres"; postgres: PostgresOptions };

/**
 * Opens the database (creating the SQLite file and its directory if missing), applies pending
 * migrations and checks that it answers. Refuses a database from a newer version
 * (StoreVersionError). The store is closed again if any of that fails.
 */
export async function openStore(config: StoreConfig): Promise<Store> {
  let store: Store;
  switch (config.type) {
    case "sqlite":
      store = openSqliteStore(config.sqlite);
      break;
    case "postgres":
      store = openPostgresStore(config.postgres);
      break;
    default:
      throw new Error(
        `database.type ${JSON.stringify((config as { type: unknown }).type)} is not ` +
          `"sqlite" or "postgres"`,
      );
  }
  try {
    await store.migrate();
    await store.ping();
  } catch (e) {
    await store.close().catch(() => {});
    if (e instanceof StoreVersionError) throw e;
    throw new Error(`cannot open the ${describe(config)}: ${(e as Error)?.message ?? e}`, {
      cause: e,
    });
  }
  return store;
}

/** Names the database in errors (never with its password). */
function describe(config: StoreConfig): string {
  if (config.type === "sqlite") return `SQLite database ${config.sqlite.path}`;
  return describePostgres(config.postgres).replace(/^the /, "");
}
