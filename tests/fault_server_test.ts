/**
 * The whole server under real database faults, injected from outside as an admin's machine would
 * meet them: the SQLite file on a full tmpfs, the SQLite file made immutable while the server
 * runs, PostgreSQL stopped and started again under traffic. Each case checks the answers (503
 * naming the database and the cause), /health, recovery without a restart, that nothing
 * acknowledged is lost across a restart, and (SQLite) `PRAGMA integrity_check`.
 *
 * Mounting a tmpfs, chattr and running PostgreSQL need root: without it these cases are skipped
 * (CI runs as root).
 */
import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { freePort, type ServerProcess, socketJson, startServer } from "./helpers/server_process.ts";

const isRoot = Deno.uid() === 0;
const PG_SCRIPT = new URL("../scripts/pg_test_server.sh", import.meta.url).pathname;

async function run(cmd: string, ...args: string[]): Promise<{ ok: boolean; text: string }> {
  const out = await new Deno.Command(cmd, { args, stdout: "piped", stderr: "piped" }).output();
  const dec = new TextDecoder();
  return { ok: out.success, text: dec.decode(out.stdout) + dec.decode(out.stderr) };
}

/** Users acknowledged (200) by name → id, and names whose creation was refused. */
interface Ledger {
  acked: Map<string, number>;
  refused: string[];
}

async function createUser(
  server: ServerProcess,
  ledger: Ledger,
  name: string,
): Promise<{ status: number; message: string }> {
  const { status, json } = await socketJson(server.socket, "POST", "/api/v1/user", { name });
  if (status === 200) {
    ledger.acked.set(name, Number((json.user as { id: string }).id));
  } else {
    ledger.refused.push(name);
  }
  return { status, message: String(json.message ?? "") };
}

async function health(server: ServerProcess): Promise<{ status: number; output: string }> {
  const res = await fetch(`${server.baseUrl}/health`);
  const json = await res.json();
  return { status: res.status, output: String(json.output ?? "") };
}

async function storedUserNames(server: ServerProcess): Promise<Map<string, number>> {
  const { status, json } = await socketJson(server.socket, "GET", "/api/v1/user");
  assert.equal(status, 200);
  const users = json.users as { id: string; name: string }[];
  return new Map(users.map((u) => [u.name, Number(u.id)]));
}

/** After a restart: every acknowledged user is there with its id, no refused one is. */
async function assertNothingAcknowledgedLost(server: ServerProcess, ledger: Ledger, exact = true) {
  const stored = await storedUserNames(server);
  for (const [name, id] of ledger.acked) {
    assert.equal(stored.get(name), id, `${name} was acknowledged`);
  }
  if (exact) {
    for (const name of ledger.refused) assert.ok(!stored.has(name), `${name} was refused`);
  }
}

function assertIntegrity(path: string): void {
  const db = new DatabaseSync(path, { readOnly: true });
  try {
    const row = db.prepare("PRAGMA integrity_check").get() as Record<string, unknown>;
    assert.equal(Object.values(row)[0], "ok");
  } finally {
    db.close();
  }
}

/** Fills the file system at `dir` until it refuses another byte; returns the filler's path. */
async function fillDisk(dir: string): Promise<string> {
  const filler = `${dir}/filler`;
  const file = await Deno.open(filler, { create: true, write: true });
  try {
    for (const size of [1 << 20, 1 << 12, 1 << 9, 1]) {
      const chunk = new Uint8Array(size);
      for (;;) {
        try {
          await file.write(chunk);
        } catch {
          break;
        }
      }
    }
  } finally {
    file.close();
  }
  return filler;
}

async function apiKeyWorks(server: ServerProcess, key: string): Promise<boolean> {
  const res = await fetch(`${server.baseUrl}/api/v1/user`, {
    headers: { authorization: `Bearer ${key}` },
  });
  await res.body?.cancel();
  return res.status === 200;
}

Deno.test({
  name:
    "faults: SQLite on a full disk — 503 'is full', /health fails, recovery without restart, nothing acknowledged lost (root: tmpfs)",
  ignore: !isRoot,
  fn: async () => {
    const dir = await Deno.makeTempDir({ prefix: "hsd-fault-full-" });
    const fs = `${dir}/fs`;
    await Deno.mkdir(fs);
    const mounted = await run("mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", fs);
    if (!mounted.ok) {
      console.warn(`skipped: cannot mount a tmpfs here: ${mounted.text.trim()}`);
      return;
    }
    const dbPath = `${fs}/db.sqlite`;
    const env = { HEADSCALE_DATABASE_SQLITE_PATH: dbPath };
    await Deno.mkdir(`${dir}/server`);
    let server = await startServer(`${dir}/server`, "", { env });
    const ledger: Ledger = { acked: new Map(), refused: [] };
    try {
      assert.equal((await createUser(server, ledger, "before")).status, 200);
      const key = await socketJson(server.socket, "POST", "/api/v1/apikey", {});
      assert.equal(key.status, 200);
      const apiKey = String(key.json.apiKey);

      const filler = await fillDisk(fs);
      let refused = 0;
      for (let i = 0; i < 10; i++) {
        const r = await createUser(server, ledger, `during-${i}`);
        if (r.status === 200) continue; // It fitted: then it is stored, checked after restart.
        assert.equal(r.status, 503, r.message);
        assert.match(r.message, /^database unavailable: the SQLite database .*db\.sqlite is full/);
        refused++;
      }
      assert.ok(refused > 0, "a full disk must refuse some write");
      const sick = await health(server);
      assert.equal(sick.status, 503);
      assert.match(sick.output, /is full/);
      const key2 = await socketJson(server.socket, "POST", "/api/v1/apikey", {});
      assert.equal(key2.status, 503, "no API key is handed out that is not stored");

      await Deno.remove(filler);
      const after = await createUser(server, ledger, "after");
      assert.equal(after.status, 200, `writes work again without a restart: ${after.message}`);
      assert.ok(
        ledger.acked.get("after")! > Math.max(...[...ledger.acked.values()].slice(0, -1)),
        "ids are never reused",
      );
      assert.equal((await health(server)).status, 200);

      await server.stop();
      assertIntegrity(dbPath);
      server = await startServer(`${dir}/server`, "", { env });
      await assertNothingAcknowledgedLost(server, ledger);
      assert.ok(
        await apiKeyWorks(server, apiKey),
        "the acknowledged API key works after a restart",
      );
    } finally {
      await server.kill();
      await run("umount", "-l", fs);
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name:
    "faults: SQLite file made immutable while running — 503 'is read-only', recovery, nothing acknowledged lost (root: chattr)",
  ignore: !isRoot,
  fn: async () => {
    const dir = await Deno.makeTempDir({ prefix: "hsd-fault-ro-" });
    let server = await startServer(dir);
    const dbPath = `${dir}/db.sqlite`;
    const files = [dbPath, `${dbPath}-wal`];
    const ledger: Ledger = { acked: new Map(), refused: [] };
    try {
      assert.equal((await createUser(server, ledger, "before")).status, 200);
      const locked = await run("chattr", "+i", ...files);
      if (!locked.ok) {
        console.warn(`skipped: chattr +i does not work here: ${locked.text.trim()}`);
        return;
      }
      try {
        for (let i = 0; i < 5; i++) {
          const r = await createUser(server, ledger, `during-${i}`);
          assert.equal(r.status, 503, r.message);
          assert.match(r.message, /^database unavailable: the SQLite database .* is read-only/);
        }
        const sick = await health(server);
        assert.equal(sick.status, 503);
        assert.match(sick.output, /is read-only/);
      } finally {
        await run("chattr", "-i", ...files);
      }
      const after = await createUser(server, ledger, "after");
      assert.equal(after.status, 200, `writes work again without a restart: ${after.message}`);
      assert.equal((await health(server)).status, 200);

      await server.stop();
      assertIntegrity(dbPath);
      server = await startServer(dir);
      await assertNothingAcknowledgedLost(server, ledger);
    } finally {
      await server.kill();
      await run("chattr", "-i", ...files);
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name:
    "faults: PostgreSQL stopped and started under traffic — 503 'is unreachable', recovery without restart, nothing acknowledged lost (root: own cluster)",
  ignore: !isRoot,
  fn: async () => {
    const dir = await Deno.makeTempDir({ prefix: "hsd-fault-pg-" });
    await Deno.chmod(dir, 0o755);
    const port = String(freePort());
    const pgEnv = { HEADSCALE_PG_TEST_DIR: `${dir}/pg` };
    await Deno.mkdir(`${dir}/server`);
    const pg = (action: string) =>
      new Deno.Command(PG_SCRIPT, {
        args: [port, action],
        env: pgEnv,
        stdout: "piped",
        stderr: "piped",
      })
        .output();
    const started = await pg("start");
    if (!started.success) {
      console.warn(
        `skipped: no PostgreSQL server could be started: ${
          new TextDecoder().decode(started.stderr)
        }`,
      );
      return;
    }
    const env = {
      HEADSCALE_DATABASE_TYPE: "postgres",
      HEADSCALE_DATABASE_POSTGRES_HOST: "127.0.0.1",
      HEADSCALE_DATABASE_POSTGRES_PORT: port,
      HEADSCALE_DATABASE_POSTGRES_NAME: "headscale_test",
      HEADSCALE_DATABASE_POSTGRES_USER: "headscale_test",
      HEADSCALE_DATABASE_POSTGRES_PASS: "headscale_test",
    };
    let server = await startServer(`${dir}/server`, "", { env });
    const ledger: Ledger = { acked: new Map(), refused: [] };
    try {
      assert.equal((await createUser(server, ledger, "before")).status, 200);
      // Traffic while the database goes away and comes back.
      let stop = false;
      const messages: string[] = [];
      const traffic = (async () => {
        for (let i = 0; !stop; i++) {
          const r = await createUser(server, ledger, `during-${i}`);
          if (r.status !== 200) {
            assert.equal(r.status, 503, r.message);
            messages.push(r.message);
          }
          await new Promise((r) => setTimeout(r, 20));
        }
      })();
      await new Promise((r) => setTimeout(r, 300));
      assert.ok((await pg("halt")).success);
      await new Promise((r) => setTimeout(r, 500));
      const sick = await health(server);
      assert.equal(sick.status, 503);
      assert.match(sick.output, /the PostgreSQL database headscale_test at .* is unreachable/);
      assert.ok(!sick.output.includes("headscale_test:"), "no password in the message");
      assert.ok((await pg("start")).success);
      const deadline = Date.now() + 30_000;
      while ((await health(server)).status !== 200) {
        assert.ok(Date.now() < deadline, "health passes again once PostgreSQL is back");
        await new Promise((r) => setTimeout(r, 200));
      }
      await new Promise((r) => setTimeout(r, 300));
      stop = true;
      await traffic;
      assert.ok(messages.length > 0, "some writes were refused while PostgreSQL was down");
      for (const m of messages) assert.match(m, /^database unavailable: the PostgreSQL database/);
      assert.equal((await createUser(server, ledger, "after")).status, 200);

      await server.stop();
      server = await startServer(`${dir}/server`, "", { env });
      // A commit whose answer was lost with the connection may have landed: refused names may
      // exist, acknowledged ones must.
      await assertNothingAcknowledgedLost(server, ledger, false);
    } finally {
      await server.kill();
      await pg("stop");
      await Deno.remove(dir, { recursive: true });
    }
  },
});
