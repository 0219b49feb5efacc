/**
 * Property: whatever sequence of changes runs and whichever of them the database refuses, the
 * tailnet in memory is what a fresh start reads from the database. Faults are SQLite's own
 * refusals on the server's connection (`max_page_count` for a full database, `query_only` for a
 * read-only one), so every write path meets them where SQLite raises them; a second connection
 * plays the fresh start. Node session fields (endpoints, disco key) are written in batches, so
 * they are compared once the faults are gone and the last batch has landed.
 */
import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import fc from "fast-check";
import { parseConfigText } from "../lib/config/load.ts";
import { silentLogger } from "../lib/log/log.ts";
import {
  ConflictError,
  InvalidArgumentError,
  KeyRejectedError,
  NotFoundError,
  UnavailableError,
} from "../lib/state/errors.ts";
import { State } from "../lib/state/state.ts";
import { openSqliteStore, type SqliteStore } from "../lib/store/sqlite.ts";
import type { NodeRecord } from "../lib/store/types.ts";

const config = parseConfigText(`tuning:
  node_store_batch_timeout: 10ms
`).config;

type Fault = "none" | "full" | "read-only";

type Op =
  | { op: "fault"; fault: Fault }
  | { op: "createUser"; name: number }
  | { op: "renameUser"; pick: number; name: number }
  | { op: "deleteUser"; pick: number }
  | { op: "createKey"; pick: number; tagged: boolean; reusable: boolean }
  | { op: "expireKey"; pick: number }
  | { op: "deleteKey"; pick: number }
  | { op: "createApiKey" }
  | { op: "expireApiKey"; pick: number }
  | { op: "deleteApiKey"; pick: number }
  | { op: "register"; machine: number; pick: number; withKey: number | null }
  | { op: "renameNode"; pick: number; name: number }
  | { op: "tagNode"; pick: number; tags: string[] }
  | { op: "routes"; pick: number; routes: string[] }
  | { op: "expireNode"; pick: number }
  | { op: "deleteNode"; pick: number }
  | { op: "report"; pick: number; port: number }
  | { op: "flush" };

const small = fc.nat({ max: 7 });
const opArb: fc.Arbitrary<Op> = fc.oneof(
  {
    arbitrary: fc.record({
      op: fc.constant("fault" as const),
      fault: fc.constantFrom<Fault>("none", "full", "read-only"),
    }),
    weight: 3,
  },
  { arbitrary: fc.record({ op: fc.constant("createUser" as const), name: small }), weight: 3 },
  fc.record({ op: fc.constant("renameUser" as const), pick: small, name: small }),
  fc.record({ op: fc.constant("deleteUser" as const), pick: small }),
  {
    arbitrary: fc.record({
      op: fc.constant("createKey" as const),
      pick: small,
      tagged: fc.boolean(),
      reusable: fc.boolean(),
    }),
    weight: 2,
  },
  fc.record({ op: fc.constant("expireKey" as const), pick: small }),
  fc.record({ op: fc.constant("deleteKey" as const), pick: small }),
  fc.record({ op: fc.constant("createApiKey" as const) }),
  fc.record({ op: fc.constant("expireApiKey" as const), pick: small }),
  fc.record({ op: fc.constant("deleteApiKey" as const), pick: small }),
  {
    arbitrary: fc.record({
      op: fc.constant("register" as const),
      machine: small,
      pick: small,
      withKey: fc.option(small),
    }),
    weight: 4,
  },
  fc.record({ op: fc.constant("renameNode" as const), pick: small, name: small }),
  fc.record({
    op: fc.constant("tagNode" as const),
    pick: small,
    tags: fc.subarray(["tag:a", "tag:b"]),
  }),
  fc.record({
    op: fc.constant("routes" as const),
    pick: small,
    routes: fc.subarray(["10.0.0.0/24", "0.0.0.0/0", "::/0"]),
  }),
  fc.record({ op: fc.constant("expireNode" as const), pick: small }),
  fc.record({ op: fc.constant("deleteNode" as const), pick: small }),
  {
    arbitrary: fc.record({
      op: fc.constant("report" as const),
      pick: small,
      port: fc.integer({ min: 1, max: 65535 }),
    }),
    weight: 3,
  },
  fc.record({ op: fc.constant("flush" as const) }),
);

const hex = (n: number) => n.toString(16).padStart(64, "0");
const pick = <T>(list: T[], i: number): T | undefined =>
  list.length ? list[i % list.length] : undefined;

function inject(db: DatabaseSync, fault: Fault): void {
  db.exec(`PRAGMA query_only = ${fault === "read-only" ? 1 : 0}`);
  const row = db.prepare("PRAGMA page_count").get() as { page_count: number };
  db.exec(`PRAGMA max_page_count = ${fault === "full" ? Number(row.page_count) : 1_000_000_000}`);
}

/** Errors a refused change may end in; anything else is a bug. */
function expected(e: unknown): boolean {
  return e instanceof UnavailableError || e instanceof ConflictError ||
    e instanceof NotFoundError || e instanceof InvalidArgumentError ||
    e instanceof KeyRejectedError;
}

async function apply(state: State, db: DatabaseSync, op: Op): Promise<void> {
  const users = state.listUsers();
  const nodes = state.listNodes();
  const keys = state.listPreAuthKeys();
  const apiKeys = state.listApiKeys();
  switch (op.op) {
    case "fault":
      return inject(db, op.fault);
    case "createUser":
      return void await state.createUser({ name: `user${op.name}` });
    case "renameUser": {
      const u = pick(users, op.pick);
      if (u) await state.renameUser(u.id, `user${op.name}`);
      return;
    }
    case "deleteUser": {
      const u = pick(users, op.pick);
      if (u) await state.deleteUser(u.id);
      return;
    }
    case "createKey": {
      const u = pick(users, op.pick);
      if (!u && !op.tagged) return;
      await state.createPreAuthKey({
        userId: op.tagged ? null : u!.id,
        reusable: op.reusable,
        ephemeral: false,
        expiration: null,
        tags: op.tagged ? ["tag:a"] : [],
      });
      return;
    }
    case "expireKey": {
      const k = pick(keys, op.pick);
      if (k) await state.expirePreAuthKey(k.id);
      return;
    }
    case "deleteKey": {
      const k = pick(keys, op.pick);
      if (k) await state.deletePreAuthKey(k.id);
      return;
    }
    case "createApiKey":
      return void await state.createApiKey(null);
    case "expireApiKey": {
      const k = pick(apiKeys, op.pick);
      if (k) await state.expireApiKey(k.id);
      return;
    }
    case "deleteApiKey": {
      const k = pick(apiKeys, op.pick);
      if (k) await state.deleteApiKey(k.id);
      return;
    }
    case "register": {
      const key = op.withKey === null ? undefined : pick(keys, op.withKey);
      const user = pick(users, op.pick);
      const tags = key ? key.tags : [];
      const userId = key ? key.userId : user?.id ?? null;
      if (userId === null && tags.length === 0) return;
      await state.registerNode({
        machineKey: `mkey:${hex(op.machine + 1)}`,
        nodeKey: `nodekey:${hex(op.machine + 1)}`,
        hostname: `host${op.machine}`,
        hostinfo: { Hostname: `host${op.machine}` },
        userId,
        tags,
        authKeyId: key?.id ?? null,
        method: key ? "authkey" : "cli",
        ephemeral: false,
        expiry: null,
      });
      return;
    }
    case "renameNode": {
      const n = pick(nodes, op.pick);
      if (n) await state.renameNode(n.id, `name${op.name}`);
      return;
    }
    case "tagNode": {
      const n = pick(nodes, op.pick);
      if (n) await state.setNodeTags(n.id, op.tags);
      return;
    }
    case "routes": {
      const n = pick(nodes, op.pick);
      if (n) await state.setApprovedRoutes(n.id, op.routes);
      return;
    }
    case "expireNode": {
      const n = pick(nodes, op.pick);
      if (n) await state.expireNode(n.id);
      return;
    }
    case "deleteNode": {
      const n = pick(nodes, op.pick);
      if (n) await state.deleteNode(n.id);
      return;
    }
    case "report": {
      const n = pick(nodes, op.pick);
      if (n) state.applyReport(n.id, { endpoints: [`192.0.2.1:${op.port}`] });
      return;
    }
    case "flush":
      return await state.flush();
  }
}

/** What a node has that is written at once (the session fields go in batches). */
function durable(n: NodeRecord) {
  const {
    discoKey: _d,
    endpoints: _e,
    hostinfo: _h,
    hostname: _n,
    lastSeen: _l,
    updatedAt: _u,
    ...rest
  } = n;
  return rest;
}

async function assertSameAsFreshStart(state: State, fresh: SqliteStore, withSession: boolean) {
  const reread = await State.open({ store: fresh, log: silentLogger(), config });
  assert.deepEqual(state.listUsers(), reread.listUsers(), "users");
  assert.deepEqual(state.listPreAuthKeys(), reread.listPreAuthKeys(), "pre-auth keys");
  assert.deepEqual(state.listApiKeys(), reread.listApiKeys(), "API keys");
  const view = withSession ? (n: NodeRecord) => n : durable;
  assert.deepEqual(state.listNodes().map(view), reread.listNodes().map(view), "nodes");
}

Deno.test("state property: with writes refused at random, memory always equals what a fresh start reads", async () => {
  await fc.assert(
    fc.asyncProperty(fc.array(opArb, { minLength: 5, maxLength: 40 }), async (ops) => {
      const dir = await Deno.makeTempDir();
      const path = `${dir}/db.sqlite`;
      const store = openSqliteStore({ path, writeAheadLog: true });
      await store.migrate();
      const fresh = openSqliteStore({ path, writeAheadLog: true });
      const state = await State.open({ store, log: silentLogger(), config });
      const db = (store as unknown as { db: DatabaseSync }).db;
      try {
        for (const op of ops) {
          try {
            await apply(state, db, op);
          } catch (e) {
            if (!expected(e)) throw new Error(`${JSON.stringify(op)} failed unexpectedly: ${e}`);
          }
          await assertSameAsFreshStart(state, fresh, false);
        }
        inject(db, "none");
        for (let i = 0; i < 100 && state.unwrittenNodeCount > 0; i++) await state.flush();
        await assertSameAsFreshStart(state, fresh, true);
      } finally {
        await state.close();
        await fresh.close();
        await store.close();
        await Deno.remove(dir, { recursive: true });
      }
    }),
    {
      numRuns: Number(Deno.env.get("PROPERTY_RUNS") ?? 40),
      examples: [
        // A user's key registered a node that was then tagged away from the user; deleting
        // the user deletes the key, and the node forgets it in the database and in memory.
        [[
          { op: "createUser", name: 1 },
          { op: "createKey", pick: 0, tagged: false, reusable: true },
          { op: "register", machine: 1, pick: 0, withKey: 0 },
          { op: "tagNode", pick: 0, tags: ["tag:a"] },
          { op: "deleteUser", pick: 0 },
          { op: "fault", fault: "read-only" },
          { op: "report", pick: 0, port: 7 },
          { op: "flush" },
        ]],
      ],
    },
  );
});
