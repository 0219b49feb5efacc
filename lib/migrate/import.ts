/**
 * Writes an import plan into our store, all or nothing. Node, user and key ids stay headscale's
 * (clients know their node by id): rows are inserted in id order through the Store interface, and
 * the gaps headscale's deletions left are filled with placeholder rows that are deleted at the end.
 *
 * SQLite: the import is written to a new file next to the target and renamed over it only when
 * everything is in; a failure leaves the target as it was. PostgreSQL: on failure every row
 * written is deleted again. A target that already holds users, nodes, keys or a policy is refused
 * unless `replace` is set (SQLite: the old file is kept as <path>.before-import).
 */
import { existsSync, renameSync, rmSync, statSync } from "node:fs";
import { resolve } from "node:path";
import { hashSecret } from "../auth/secrets.ts";
import { openStore, type StoreConfig } from "../store/mod.ts";
import type { NewNode, Store } from "../store/types.ts";
import { type ImportPlan, MigrateError } from "./headscale.ts";

export interface ImportOptions {
  /** Replace a target that already holds data. */
  replace?: boolean;
  /** The headscale source, refused as the target (a SQLite path). */
  source?: string;
}

export interface ImportResult {
  users: number;
  nodes: number;
  preAuthKeys: number;
  apiKeys: number;
  policy: boolean;
}

async function contents(store: Store): Promise<string | null> {
  const [users, nodes, keys, apiKeys, policy] = await Promise.all([
    store.listUsers(),
    store.listNodes(),
    store.listPreAuthKeys(),
    store.listApiKeys(),
    store.getPolicy(),
  ]);
  const parts = [
    users.length && `${users.length} user(s)`,
    nodes.length && `${nodes.length} node(s)`,
    keys.length && `${keys.length} pre-auth key(s)`,
    apiKeys.length && `${apiKeys.length} API key(s)`,
    policy !== null && "a policy",
  ].filter(Boolean);
  return parts.length ? parts.join(", ") : null;
}

export async function importPlan(
  target: StoreConfig,
  plan: ImportPlan,
  opts: ImportOptions = {},
): Promise<ImportResult> {
  if (target.type === "sqlite") return await importSqlite(target, plan, opts);
  const store = await openStore(target);
  try {
    const held = await contents(store);
    if (held !== null) {
      throw new MigrateError(
        `the target database already holds ${held}; import into an empty database`,
      );
    }
    const written = new Written();
    try {
      return await writePlan(store, plan, written);
    } catch (e) {
      await written.undo(store);
      throw e;
    }
  } finally {
    await store.close();
  }
}

async function importSqlite(
  target: Extract<StoreConfig, { type: "sqlite" }>,
  plan: ImportPlan,
  opts: ImportOptions,
): Promise<ImportResult> {
  const path = target.sqlite.path;
  if (opts.source && existsSync(opts.source) && resolve(opts.source) === resolve(path)) {
    throw new MigrateError(
      `database.sqlite.path (${path}) is the headscale database itself; move it aside (for ` +
        "example to headscale.sqlite) and import from there",
    );
  }
  if (existsSync(path) && statSync(path).size > 0) {
    let held: string | null;
    try {
      const existing = await openStore(target);
      try {
        held = await contents(existing);
      } finally {
        await existing.close();
      }
    } catch (e) {
      if (e instanceof MigrateError) throw e;
      throw new MigrateError(`the target ${path} cannot be opened: ${(e as Error).message}`);
    }
    if (held !== null && !opts.replace) {
      throw new MigrateError(
        `the target ${path} already holds ${held}; refusing to import over it ` +
          "(--force replaces it, keeping the old file as " + `${path}.before-import)`,
      );
    }
  }
  const tmp = `${path}.import-${Date.now()}`;
  const cleanup = () => {
    for (const f of [tmp, `${tmp}-wal`, `${tmp}-shm`, `${tmp}-journal`]) rmSync(f, { force: true });
  };
  let result: ImportResult;
  try {
    const store = await openStore({ type: "sqlite", sqlite: { ...target.sqlite, path: tmp } });
    try {
      result = await writePlan(store, plan, new Written());
    } finally {
      await store.close();
    }
  } catch (e) {
    cleanup();
    throw e;
  }
  if (existsSync(path)) renameSync(path, `${path}.before-import`);
  for (const f of [`${path}-wal`, `${path}-shm`]) rmSync(f, { force: true });
  renameSync(tmp, path);
  cleanup();
  return result;
}

/** What was written, to take back on failure (PostgreSQL). */
class Written {
  users: number[] = [];
  keys: number[] = [];
  nodes: number[] = [];
  apiKeys: number[] = [];
  async undo(store: Store) {
    for (const id of this.nodes) await store.deleteNode(id).catch(() => {});
    for (const id of this.apiKeys) await store.deleteApiKey(id).catch(() => {});
    for (const id of this.keys) await store.deletePreAuthKey(id).catch(() => {});
    for (const id of this.users) await store.deleteUser(id).catch(() => {});
  }
}

/**
 * Inserts rows in id order so each gets its headscale id: gaps get placeholders, deleted after.
 * `next` is the id the table hands out next (1 in an empty table).
 */
async function placeInOrder<T extends { id: number }>(
  what: string,
  rows: T[],
  insert: (row: T) => Promise<number>,
  filler: (n: number) => Promise<number>,
  done: number[],
  fillers: number[],
): Promise<void> {
  let next = 1;
  for (const row of [...rows].sort((a, b) => a.id - b.id)) {
    while (next < row.id) {
      const got = await filler(next);
      fillers.push(got);
      done.push(got);
      next = got + 1;
    }
    const got = await insert(row);
    done.push(got);
    if (got !== row.id) {
      throw new MigrateError(`${what} ${row.id} would become ${got}: the target is not empty`);
    }
    next = got + 1;
  }
}

const hex64 = (n: number) => n.toString(16).padStart(64, "0");

async function writePlan(store: Store, plan: ImportPlan, w: Written): Promise<ImportResult> {
  const epoch = new Date(0);
  const fill = {
    users: [] as number[],
    keys: [] as number[],
    nodes: [] as number[],
    api: [] as number[],
  };

  await placeInOrder(
    "user",
    plan.users,
    async ({ id: _, ...u }) => (await store.insertUser(u)).id,
    async (n) =>
      (await store.insertUser({
        name: `import-placeholder-${n}`,
        displayName: "",
        email: "",
        providerId: "",
        provider: "",
        profilePicUrl: "",
        createdAt: epoch,
      })).id,
    w.users,
    fill.users,
  );
  await placeInOrder(
    "pre-auth key",
    plan.preAuthKeys,
    async ({ id: _, plaintext, ...k }) =>
      (await store.insertPreAuthKey({
        ...k,
        hash: plaintext !== undefined ? await hashSecret(plaintext) : k.hash,
      })).id,
    async (n) =>
      (await store.insertPreAuthKey({
        prefix: `~placeholder-${n}`,
        hash: "",
        userId: null,
        reusable: false,
        ephemeral: false,
        used: true,
        tags: ["tag:import-placeholder"],
        expiration: epoch,
        createdAt: epoch,
      })).id,
    w.keys,
    fill.keys,
  );
  await placeInOrder(
    "node",
    plan.nodes,
    async ({ id: _, ...n }) => (await store.saveNode(n)).id,
    async (n) => {
      const placeholder: NewNode = {
        machineKey: `mkey:${hex64(n)}`,
        nodeKey: `nodekey:${hex64(n)}`,
        discoKey: "",
        ipv4: null,
        ipv6: null,
        hostname: `import-placeholder-${n}`,
        givenName: `import-placeholder-${n}`,
        userId: null,
        tags: ["tag:import-placeholder"],
        authKeyId: null,
        registerMethod: "unspecified",
        ephemeral: false,
        hostinfo: null,
        endpoints: [],
        approvedRoutes: [],
        expiry: epoch,
        lastSeen: null,
        createdAt: epoch,
        updatedAt: epoch,
      };
      return (await store.saveNode(placeholder)).id;
    },
    w.nodes,
    fill.nodes,
  );
  await placeInOrder(
    "API key",
    plan.apiKeys,
    async ({ id: _, ...k }) => (await store.insertApiKey(k)).id,
    async (n) =>
      (await store.insertApiKey({
        prefix: `~placeholder-${n}`,
        hash: "",
        expiration: epoch,
        lastSeen: null,
        createdAt: epoch,
      })).id,
    w.apiKeys,
    fill.api,
  );
  for (const id of fill.nodes) await store.deleteNode(id);
  for (const id of fill.api) await store.deleteApiKey(id);
  for (const id of fill.keys) await store.deletePreAuthKey(id);
  for (const id of fill.users) await store.deleteUser(id);
  if (plan.policy !== null) await store.setPolicy(plan.policy);
  return {
    users: plan.users.length,
    nodes: plan.nodes.length,
    preAuthKeys: plan.preAuthKeys.length,
    apiKeys: plan.apiKeys.length,
    policy: plan.policy !== null,
  };
}
