/**
 * Crash durability of the SQLite store: a child process writes users and pre-auth keys and
 * prints each id once its write resolved; we SIGKILL it mid-run, reopen the database and expect
 * every acknowledged row, whole, and no half-written row anywhere.
 */
import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { openStore } from "../lib/store/mod.ts";

const ROOT = new URL("../", import.meta.url);
const WRITER = new URL("./fixtures/store_writer.ts", import.meta.url);
// The permissions the test run itself has (see the README's test command).
const PERMISSIONS = ["--allow-net", "--allow-read", "--allow-write", "--allow-env", "--allow-sys"];
const ACKS_BEFORE_KILL = 200;

interface Acks {
  users: Map<number, string>;
  keys: Map<number, { userId: number; prefix: string }>;
}

function parseAck(line: string, acks: Acks): void {
  const [kind, id, a, b] = line.split(" ");
  if (kind === "user") acks.users.set(Number(id), a);
  else if (kind === "key") acks.keys.set(Number(id), { userId: Number(a), prefix: b });
  else throw new Error(`unexpected line from the writer: ${JSON.stringify(line)}`);
}

Deno.test("store sqlite: acknowledged writes survive SIGKILL of the writer", async () => {
  const dir = await Deno.makeTempDir({ prefix: "headscale-crash-" });
  const path = `${dir}/db.sqlite`;
  try {
    const child = new Deno.Command(Deno.execPath(), {
      args: ["run", "--quiet", ...PERMISSIONS, WRITER.pathname, path],
      cwd: ROOT.pathname,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();

    const acks: Acks = { users: new Map(), keys: new Map() };
    let killed = false;
    let pending = "";
    const decoder = new TextDecoder();
    // Keep reading after the kill: lines already in the pipe were acknowledged before it.
    for await (const chunk of child.stdout) {
      pending += decoder.decode(chunk, { stream: true });
      const lines = pending.split("\n");
      pending = lines.pop()!;
      for (const line of lines) parseAck(line, acks);
      if (!killed && acks.users.size + acks.keys.size >= ACKS_BEFORE_KILL) {
        child.kill("SIGKILL");
        killed = true;
      }
    }
    const status = await child.status;
    const stderr = new TextDecoder().decode(
      (await new Response(child.stderr).arrayBuffer()) as ArrayBuffer,
    );
    assert.equal(pending, "", "a line is written whole");
    assert.equal(status.signal, "SIGKILL", `the writer was killed mid-run; stderr: ${stderr}`);

    // The file is sound after recovery (WAL replay), before the store even opens it.
    const raw = new DatabaseSync(path);
    assert.deepEqual(raw.prepare("PRAGMA integrity_check").all().map((r) => r.integrity_check), [
      "ok",
    ]);
    raw.close();

    const store = await openStore({ type: "sqlite", sqlite: { path, writeAheadLog: true } });
    try {
      const users = new Map((await store.listUsers()).map((u) => [u.id, u]));
      const keys = new Map((await store.listPreAuthKeys()).map((k) => [k.id, k]));

      for (const [id, name] of acks.users) {
        assert.equal(users.get(id)?.name, name, `acknowledged user ${id} is present`);
      }
      for (const [id, ack] of acks.keys) {
        const key = keys.get(id);
        assert.ok(key, `acknowledged pre-auth key ${id} is present`);
        assert.equal(key.userId, ack.userId);
        assert.equal(key.prefix, ack.prefix);
      }
      // Whatever else is there (a write that committed just before the kill) is whole too.
      for (const u of users.values()) {
        const i = u.name.replace("user-", "");
        assert.deepEqual(
          [u.displayName, u.email, Number.isNaN(u.createdAt.getTime())],
          [`User ${i}`, `user-${i}@example.com`, false],
        );
      }
      for (const k of keys.values()) {
        const owner = users.get(k.userId!);
        assert.ok(owner, `key ${k.id} has its user`);
        const i = Number(owner.name.replace("user-", ""));
        assert.deepEqual(
          [k.prefix, k.hash, k.tags, k.reusable, k.used],
          [`prefix${i}`, `hash-${i}`, [`tag:t${i}`], i % 2 === 0, false],
        );
      }
      // And the store takes new writes after the crash.
      await store.insertUser({ ...[...users.values()][0], name: "after-crash" });
    } finally {
      await store.close();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
