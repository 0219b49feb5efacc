import assert from "node:assert/strict";
import { getOption } from "@bufbuild/protobuf";
import { http as httpRule } from "../gen/google/api/annotations_pb.ts";
import { HeadscaleService } from "../gen/headscale/v1/headscale_pb.ts";
import { startApiServer } from "./helpers/api_server.ts";
import { openMemoryState } from "./helpers/memory_state.ts";

async function startApi() {
  const { store, state } = await openMemoryState();
  const api = await startApiServer(state, store);
  return {
    base: api.base,
    key: api.key,
    state,
    async close() {
      await api.close();
      await store.close();
    },
  };
}

/** Every REST route with its path parameters filled in. */
function restCalls(): { method: string; path: string }[] {
  return HeadscaleService.methods.map((m) => {
    const rule = getOption(m, httpRule);
    const path = String(rule.pattern.value).replace(/\{[a-z_]+\}/g, "1");
    return { method: String(rule.pattern.case).toUpperCase(), path };
  });
}

Deno.test("api: every REST route and every RPC refuses a missing or wrong API key", async () => {
  const api = await startApi();
  try {
    const calls = restCalls();
    assert.ok(calls.length >= 25, "all RPCs have REST routes");
    for (
      const auth of [
        undefined,
        "Bearer hskey-api-000000000000-" + "0".repeat(64),
        "Basic abc",
        `Bearer ${api.key}x`,
      ]
    ) {
      for (const { method, path } of calls) {
        const res = await fetch(api.base + path, {
          method,
          headers: auth ? { authorization: auth, "content-type": "application/json" } : {},
          body: method === "GET" || method === "DELETE" ? undefined : "{}",
        });
        await res.body?.cancel();
        assert.equal(res.status, 401, `${method} ${path} with ${auth ?? "no key"}`);
      }
      for (const m of HeadscaleService.methods) {
        const res = await fetch(`${api.base}/${HeadscaleService.typeName}/${m.name}`, {
          method: "POST",
          headers: { "content-type": "application/json", ...(auth ? { authorization: auth } : {}) },
          body: "{}",
        });
        const body = await res.json();
        assert.equal(res.status, 401, `rpc ${m.name}`);
        assert.equal(body.code, "unauthenticated");
      }
    }
    assert.equal(api.state.listUsers().length, 0, "nothing ran");
  } finally {
    await api.close();
  }
});

Deno.test("api: REST speaks headscale's JSON; bad input is 400, unknown ids 404", async () => {
  const api = await startApi();
  const call = async (method: string, path: string, body?: unknown) => {
    const res = await fetch(api.base + path, {
      method,
      headers: { authorization: `Bearer ${api.key}`, "content-type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    return { status: res.status, json: await res.json() };
  };
  try {
    const created = await call("POST", "/api/v1/user", {
      name: "alice",
      email: "alice@example.com",
    });
    assert.equal(created.status, 200);
    assert.equal(created.json.user.id, "1");
    assert.equal(created.json.user.name, "alice");
    assert.equal(created.json.user.displayName, "");
    assert.match(created.json.user.createdAt, /^\d{4}-\d\d-\d\dT/);

    const list = await call("GET", "/api/v1/user?name=alice");
    assert.deepEqual(list.json.users.map((u: { name: string }) => u.name), ["alice"]);

    const key = await call("POST", "/api/v1/preauthkey", {
      user: "1",
      reusable: true,
      aclTags: ["tag:web"],
      expiration: new Date(Date.now() + 3_600_000).toISOString(),
    });
    assert.equal(key.status, 200);
    assert.match(key.json.preAuthKey.key, /^hskey-auth-[0-9a-f]{12}-[0-9a-f]{64}$/);
    const keys = await call("GET", "/api/v1/preauthkey");
    assert.match(
      keys.json.preAuthKeys[0].key,
      /^hskey-auth-[0-9a-f]{12}-\*\*\*$/,
      "listed keys are masked",
    );

    const renamed = await call("POST", "/api/v1/user/1/rename/alicia");
    assert.equal(renamed.json.user.name, "alicia");

    for (
      const [method, path, body] of [
        ["POST", "/api/v1/user", { name: "bad name" }],
        ["POST", "/api/v1/user", { name: "" }],
        ["POST", "/api/v1/preauthkey", { user: "1", aclTags: ["web"] }],
        ["POST", "/api/v1/preauthkey", { user: "1", expiration: "2001-01-01T00:00:00Z" }],
        ["POST", "/api/v1/user", "not an object"],
        ["POST", "/api/v1/node/abc/rename/x", undefined],
      ] as const
    ) {
      const r = await call(method, path, body);
      assert.equal(
        r.status,
        400,
        `${method} ${path} ${JSON.stringify(body)}: ${JSON.stringify(r.json)}`,
      );
      assert.equal(typeof r.json.message, "string");
    }
    for (
      const [method, path] of [["GET", "/api/v1/node/42"], ["DELETE", "/api/v1/user/42"], [
        "POST",
        "/api/v1/node/42/expire",
      ]]
    ) {
      const r = await call(method, path);
      assert.equal(r.status, 404, `${method} ${path}`);
    }
    assert.equal(api.state.listUsers().length, 1, "failed calls wrote nothing");
    const health = await call("GET", "/api/v1/health");
    assert.deepEqual(health.json, { databaseConnectivity: true });
  } finally {
    await api.close();
  }
});
