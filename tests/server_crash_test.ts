/**
 * Durability of the whole server: SIGKILL it while a client creates users and pre-auth keys
 * through the API, restart it, and check that every write that was acknowledged is there, and
 * that nothing is half-written.
 */
import assert from "node:assert/strict";
import { socketJson, startServer } from "./helpers/server_process.ts";

Deno.test("server: a SIGKILL mid-write loses no acknowledged user or key", async () => {
  const server = await startServer();
  const ackedUsers = new Map<string, string>(); // id → name
  const ackedKeys = new Set<string>(); // key ids
  const target = 1000;
  const killAfter = 150 + Math.floor(Math.random() * 150);
  let killed = false;

  // Four writers in parallel, so the kill lands among in-flight transactions.
  const writer = async (w: number) => {
    for (let i = w; i < target && !killed; i += 4) {
      try {
        const name = `user-${i}`;
        const u = await socketJson(server.socket, "POST", "/api/v1/user", { name });
        if (u.status !== 200) throw new Error(`create user: ${JSON.stringify(u.json)}`);
        const id = (u.json.user as { id: string }).id;
        ackedUsers.set(id, name);
        const k = await socketJson(server.socket, "POST", "/api/v1/preauthkey", {
          user: id,
          reusable: i % 2 === 0,
          expiration: new Date(Date.now() + 86_400_000).toISOString(),
        });
        if (k.status !== 200) throw new Error(`create key: ${JSON.stringify(k.json)}`);
        ackedKeys.add((k.json.preAuthKey as { id: string }).id);
        if (!killed && ackedUsers.size + ackedKeys.size >= killAfter) {
          killed = true;
          await server.kill();
        }
      } catch (e) {
        if (killed) return; // Requests in flight at the kill fail: they were never acknowledged.
        throw e;
      }
    }
  };
  await Promise.all([0, 1, 2, 3].map(writer));
  assert.ok(killed, "the server was killed mid-run");

  const again = await startServer(server.dir);
  try {
    const users = await socketJson(again.socket, "GET", "/api/v1/user");
    const byId = new Map(
      (users.json.users as { id: string; name: string }[]).map((u) => [u.id, u.name]),
    );
    for (const [id, name] of ackedUsers) assert.equal(byId.get(id), name, `user ${id} survived`);
    const keys = await socketJson(again.socket, "GET", "/api/v1/preauthkey");
    const keyRows = keys.json.preAuthKeys as { id: string; user?: { id: string }; key: string }[];
    const keyIds = new Set(keyRows.map((k) => k.id));
    for (const id of ackedKeys) assert.ok(keyIds.has(id), `key ${id} survived`);
    for (const k of keyRows) {
      assert.ok(k.user && byId.has(k.user.id), `key ${k.id} has its user`);
      assert.match(k.key, /^hskey-auth-[0-9a-f]{12}-\*\*\*$/);
    }
    // The restarted server keeps working on the same database.
    const more = await socketJson(again.socket, "POST", "/api/v1/user", { name: "after-restart" });
    assert.equal(more.status, 200);
  } finally {
    await again.stop();
    await Deno.remove(server.dir, { recursive: true });
  }
});
