import assert from "node:assert/strict";
import { createServer } from "node:http";
import { healthHandler, keyHandler } from "../lib/http/basic_routes.ts";
import { Router } from "../lib/http/router.ts";
import { silentLogger } from "../lib/log/log.ts";

async function serve(router: Router) {
  const server = createServer(router.handleRequest);
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const base = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
  return { base, close: () => new Promise((r) => server.close(r)) };
}

Deno.test("/health passes while the database takes writes and fails with 503 and the reason when it does not", async () => {
  let up = true;
  const router = new Router(silentLogger()).on(
    "GET",
    "/health",
    healthHandler(() => up ? Promise.resolve() : Promise.reject(new Error("database is gone"))),
  );
  const s = await serve(router);
  try {
    let res = await fetch(`${s.base}/health`);
    assert.equal(res.status, 200);
    assert.deepEqual(await res.json(), { status: "pass" });
    up = false;
    res = await fetch(`${s.base}/health`);
    assert.equal(res.status, 503);
    assert.deepEqual(await res.json(), { status: "fail", output: "database is gone" });
    up = true;
    res = await fetch(`${s.base}/health`);
    assert.equal(res.status, 200, "passes again once the database is back");
    assert.deepEqual(await res.json(), { status: "pass" });
  } finally {
    await s.close();
  }
});

Deno.test("/key answers the Noise key and refuses missing or too-old capability versions", async () => {
  const pub = "mkey:" + "ab".repeat(32);
  const s = await serve(new Router(silentLogger()).on("GET", "/key", keyHandler(pub, 113)));
  try {
    const ok = await fetch(`${s.base}/key?v=130`);
    assert.deepEqual(await ok.json(), {
      legacyPublicKey: "mkey:" + "0".repeat(64),
      publicKey: pub,
    });
    for (const q of ["", "?v=", "?v=abc", "?v=112"]) {
      const res = await fetch(`${s.base}/key${q}`);
      assert.equal(res.status, 400, q);
      await res.body?.cancel();
    }
    const wrong = await fetch(`${s.base}/key`, { method: "POST" });
    assert.equal(wrong.status, 405);
    await wrong.body?.cancel();
  } finally {
    await s.close();
  }
});
