import assert from "node:assert/strict";
import type { MachineKey } from "../lib/tailcfg/keys.ts";
import type { IncomingMessage, ServerResponse } from "node:http";
import { randomKey, startTestControl, type TestControl } from "./helpers/control.ts";
import type { RegisterResponse } from "../lib/tailcfg/types.ts";

const ZERO_NODEKEY = "nodekey:" + "0".repeat(64);
const LOGOUT_EXPIRY = "1970-01-01T00:02:03Z";

function registerBody(nodeKey: string, extra: Record<string, unknown> = {}) {
  return {
    Version: 130,
    NodeKey: nodeKey,
    OldNodeKey: ZERO_NODEKEY,
    Expiry: "0001-01-01T00:00:00Z",
    Followup: "",
    Hostinfo: { Hostname: "laptop", OS: "linux", BackendLogID: "abc" },
    ...extra,
  };
}

async function withControl(fn: (t: TestControl) => Promise<void>, opts = {}) {
  const t = await startTestControl(opts);
  try {
    await fn(t);
  } finally {
    await t.close();
  }
}

async function register(
  t: TestControl,
  machineKey: MachineKey,
  body: unknown,
): Promise<{ status: number; json: RegisterResponse | null; text: string }> {
  const reply = await t.connect(machineKey).register(body as Record<string, unknown>);
  let json: RegisterResponse | null = null;
  try {
    json = JSON.parse(reply.text);
  } catch { /* not JSON: an error status */ }
  return { status: reply.status, json, text: reply.text };
}

Deno.test("register: a pre-auth key registers the node for the key's user", async () => {
  await withControl(async (t) => {
    const alice = await t.user("alice");
    const key = await t.authKey({ user: alice });
    const mkey = randomKey("mkey:");
    const nkey = randomKey("nodekey:");
    const r = await register(t, mkey, registerBody(nkey, { Auth: { AuthKey: key } }));
    assert.equal(r.status, 200);
    assert.equal(r.json!.MachineAuthorized, true);
    assert.equal(r.json!.NodeKeyExpired, false);
    assert.equal(r.json!.AuthURL, "");
    assert.equal(r.json!.User.ID, alice.id);
    assert.equal(r.json!.Login.LoginName, "alice");
    const node = t.state.nodeByNodeKey(nkey)!;
    assert.equal(node.machineKey, mkey);
    assert.equal(node.userId, alice.id);
    assert.equal(node.givenName, "laptop");
    assert.equal(node.registerMethod, "authkey");
    assert.ok(node.ipv4);
  });
});

Deno.test("register: the same machine registering again keeps its node id and addresses", async () => {
  await withControl(async (t) => {
    const alice = await t.user("alice");
    const key = await t.authKey({ user: alice, reusable: true });
    const mkey = randomKey("mkey:");
    const first = randomKey("nodekey:");
    await register(t, mkey, registerBody(first, { Auth: { AuthKey: key } }));
    const before = t.state.nodeByNodeKey(first)!;
    const second = randomKey("nodekey:");
    const r = await register(
      t,
      mkey,
      registerBody(second, { OldNodeKey: first, Auth: { AuthKey: key } }),
    );
    assert.equal(r.json!.MachineAuthorized, true);
    const after = t.state.nodeByNodeKey(second)!;
    assert.equal(after.id, before.id);
    assert.equal(after.ipv4, before.ipv4);
    assert.equal(after.ipv6, before.ipv6);
    assert.equal(t.state.nodeByNodeKey(first), undefined);
    assert.equal(t.state.nodeCount, 1);
  });
});

Deno.test("register: refused keys answer with a clear RegisterResponse.Error", async () => {
  await withControl(async (t) => {
    const alice = await t.user("alice");
    const single = await t.authKey({ user: alice });
    const ok = await register(
      t,
      randomKey("mkey:"),
      registerBody(randomKey("nodekey:"), { Auth: { AuthKey: single } }),
    );
    assert.equal(ok.json!.MachineAuthorized, true);

    const used = await register(
      t,
      randomKey("mkey:"),
      registerBody(randomKey("nodekey:"), { Auth: { AuthKey: single } }),
    );
    assert.equal(used.status, 200);
    assert.equal(used.json!.Error, "auth key already used");
    assert.equal(used.json!.MachineAuthorized, false);

    const expiring = await t.authKey({ user: alice, expiration: new Date(Date.now() + 50) });
    await new Promise((r) => setTimeout(r, 80));
    const expired = await register(
      t,
      randomKey("mkey:"),
      registerBody(randomKey("nodekey:"), { Auth: { AuthKey: expiring } }),
    );
    assert.equal(expired.json!.Error, "auth key expired");

    const bogus = await register(
      t,
      randomKey("mkey:"),
      registerBody(randomKey("nodekey:"), { Auth: { AuthKey: "hskey-auth-nope-nope" } }),
    );
    assert.equal(bogus.json!.Error, "invalid auth key");
    assert.equal(t.state.nodeCount, 1);
  });
});

Deno.test("register: a single-use key still works for the machine it registered", async () => {
  await withControl(async (t) => {
    const alice = await t.user("alice");
    const single = await t.authKey({ user: alice });
    const mkey = randomKey("mkey:");
    const nkey = randomKey("nodekey:");
    await register(t, mkey, registerBody(nkey, { Auth: { AuthKey: single } }));
    const again = await register(t, mkey, registerBody(nkey, { Auth: { AuthKey: single } }));
    assert.equal(again.json!.Error, undefined);
    assert.equal(again.json!.MachineAuthorized, true);
    assert.equal(t.state.nodeCount, 1);
  });
});

Deno.test("register: concurrent uses of one single-use key register only one node", async () => {
  await withControl(async (t) => {
    const alice = await t.user("alice");
    const single = await t.authKey({ user: alice });
    const results = await Promise.all(
      [0, 1, 2].map(() =>
        register(
          t,
          randomKey("mkey:"),
          registerBody(randomKey("nodekey:"), { Auth: { AuthKey: single } }),
        )
      ),
    );
    assert.equal(results.filter((r) => r.json!.MachineAuthorized).length, 1);
    assert.equal(results.filter((r) => r.json!.Error === "auth key already used").length, 2);
    assert.equal(t.state.nodeCount, 1);
  });
});

Deno.test("register: a tagged key makes a node owned by its tags", async () => {
  await withControl(async (t) => {
    const key = await t.authKey({ user: null, tags: ["tag:server"] });
    const nkey = randomKey("nodekey:");
    const r = await register(t, randomKey("mkey:"), registerBody(nkey, { Auth: { AuthKey: key } }));
    assert.equal(r.json!.MachineAuthorized, true);
    assert.equal(r.json!.User.ID, 2147455555);
    assert.equal(r.json!.Login.LoginName, "tagged-devices");
    const node = t.state.nodeByNodeKey(nkey)!;
    assert.deepEqual(node.tags, ["tag:server"]);
    assert.equal(node.userId, null);
    assert.equal(node.expiry, null);
  });
});

Deno.test("register: a node key bound to another machine is refused with 401", async () => {
  await withControl(async (t) => {
    const alice = await t.user("alice");
    const key = await t.authKey({ user: alice, reusable: true });
    const nkey = randomKey("nodekey:");
    await register(t, randomKey("mkey:"), registerBody(nkey, { Auth: { AuthKey: key } }));
    const thief = randomKey("mkey:");
    const restart = await register(t, thief, registerBody(nkey));
    assert.equal(restart.status, 401);
    assert.match(restart.text, /different machine key/);
    const logout = await register(t, thief, registerBody(nkey, { Expiry: LOGOUT_EXPIRY }));
    assert.equal(logout.status, 401);
    const withKey = await register(t, thief, registerBody(nkey, { Auth: { AuthKey: key } }));
    assert.equal(withKey.status, 401);
    assert.equal(t.state.isExpired(t.state.nodeByNodeKey(nkey)!), false);
  });
});

Deno.test("register: malformed requests get 400/413 with the reason", async () => {
  await withControl(async (t) => {
    const client = t.connect(randomKey("mkey:"));
    const old = await client.register(registerBody(randomKey("nodekey:"), { Version: 100 }));
    assert.equal(old.status, 400);
    assert.match(old.text, /unsupported client version.*100/);

    const bad = await client.post("/machine/register", "{not json");
    assert.equal(bad.status, 400);
    assert.match(bad.text, /not valid JSON/);

    const notObject = await client.post("/machine/register", "[1,2]");
    assert.equal(notObject.status, 400);

    const noKey = await client.register({ Version: 130 });
    assert.equal(noKey.status, 400);
    assert.match(noKey.text, /NodeKey/);

    const badExpiry = await client.register(
      registerBody(randomKey("nodekey:"), { Expiry: "yesterday" }),
    );
    assert.equal(badExpiry.status, 400);

    const huge = await client.post(
      "/machine/register",
      JSON.stringify({ ...registerBody(randomKey("nodekey:")), pad: "x".repeat(1.5 * 2 ** 20) }),
    );
    assert.equal(huge.status, 413);

    const get = await client.request("GET", "/machine/register");
    assert.equal(get.status, 405);

    // The connection still serves requests after all that.
    const fine = await client.register(registerBody(randomKey("nodekey:")));
    assert.equal(fine.status, 200);
  });
});

Deno.test("register: a restarting client gets its state; logout expires the node", async () => {
  await withControl(async (t) => {
    const alice = await t.user("alice");
    const key = await t.authKey({ user: alice });
    const mkey = randomKey("mkey:");
    const nkey = randomKey("nodekey:");
    await register(t, mkey, registerBody(nkey, { Auth: { AuthKey: key } }));

    const restart = await register(t, mkey, registerBody(nkey));
    assert.equal(restart.json!.MachineAuthorized, true);
    assert.equal(restart.json!.User.ID, alice.id);

    const extend = await register(
      t,
      mkey,
      registerBody(nkey, { Expiry: new Date(Date.now() + 86_400_000).toISOString() }),
    );
    // The node never expires (node.expiry 0), so a future expiry shortens it: allowed.
    assert.equal(extend.status, 200);
    const shortened = t.state.nodeByNodeKey(nkey)!.expiry!;
    const longer = await register(
      t,
      mkey,
      registerBody(nkey, { Expiry: new Date(shortened.getTime() + 60_000).toISOString() }),
    );
    assert.equal(longer.status, 400);
    assert.match(longer.text, /extending key is not allowed/);

    const out = await register(t, mkey, registerBody(nkey, { Expiry: LOGOUT_EXPIRY }));
    assert.equal(out.status, 200);
    assert.equal(out.json!.NodeKeyExpired, true);
    const node = t.state.nodeByNodeKey(nkey)!;
    assert.ok(t.state.isExpired(node));
    assert.ok(node.expiry!.getTime() > Date.UTC(2000, 0, 1), "the 1970 sentinel becomes now");

    const after = await register(t, mkey, registerBody(nkey));
    assert.equal(after.json!.NodeKeyExpired, true);

    // The client then rotates its key and logs in again: same node, new key.
    const rotated = randomKey("nodekey:");
    const reKey = await t.authKey({ user: alice });
    const again = await register(
      t,
      mkey,
      registerBody(rotated, { OldNodeKey: nkey, Auth: { AuthKey: reKey } }),
    );
    assert.equal(again.json!.MachineAuthorized, true);
    assert.equal(again.json!.NodeKeyExpired, false);
    assert.equal(t.state.nodeByNodeKey(rotated)!.id, node.id);
  });
});

Deno.test("register: logout of an ephemeral node deletes it", async () => {
  await withControl(async (t) => {
    const alice = await t.user("alice");
    const key = await t.authKey({ user: alice, ephemeral: true });
    const mkey = randomKey("mkey:");
    const nkey = randomKey("nodekey:");
    await register(t, mkey, registerBody(nkey, { Auth: { AuthKey: key } }));
    assert.equal(t.state.nodeByNodeKey(nkey)!.ephemeral, true);
    const out = await register(
      t,
      mkey,
      registerBody(nkey, { Expiry: LOGOUT_EXPIRY, Auth: { AuthKey: key } }),
    );
    assert.equal(out.status, 200);
    assert.equal(out.json!.NodeKeyExpired, true);
    assert.equal(t.state.nodeCount, 0);
  });
});

function fakeHttp(url: string) {
  let status = 0;
  let body = "";
  const res = {
    writeHead(s: number) {
      status = s;
      return res;
    },
    end(b?: string) {
      body = b ?? "";
    },
  };
  return {
    req: { url, method: "GET" } as unknown as IncomingMessage,
    res: res as unknown as ServerResponse,
    result: () => ({ status, body }),
  };
}

Deno.test("register: interactive login waits for an admin's approval", async () => {
  await withControl(async (t) => {
    const alice = await t.user("alice");
    const mkey = randomKey("mkey:");
    const nkey = randomKey("nodekey:");
    const first = await register(t, mkey, registerBody(nkey));
    assert.equal(first.status, 200);
    const authUrl = first.json!.AuthURL;
    assert.match(authUrl, /^http:\/\/127\.0\.0\.1:8080\/register\/[A-Za-z0-9]{24}$/);
    const id = authUrl.split("/").pop()!;

    const pending = t.control.authRequests.list();
    assert.equal(pending.length, 1);
    assert.equal(pending[0].id, id);
    assert.equal(pending[0].hostname, "laptop");

    const page = fakeHttp(`/register/${id}`);
    t.control.registerPage(page.req, page.res);
    assert.equal(page.result().status, 200);
    assert.ok(
      page.result().body.includes(
        `headscale-deno auth register --auth-id ${id} --user &#60;USERNAME&#62;`,
      ),
    );
    const unknown = fakeHttp(`/register/<script>`);
    t.control.registerPage(unknown.req, unknown.res);
    assert.equal(unknown.result().status, 404);
    assert.ok(!unknown.result().body.includes("<script>"));

    // The Followup blocks until the admin approves.
    let settled = false;
    const followup = register(t, mkey, registerBody(nkey, { Followup: authUrl })).finally(() =>
      settled = true
    );
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(settled, false);
    const node = await t.control.authRequests.register(id, alice.id);
    const done = await followup;
    assert.equal(done.status, 200);
    assert.equal(done.json!.MachineAuthorized, true);
    assert.equal(done.json!.User.ID, alice.id);
    assert.equal(node.userId, alice.id);
    assert.equal(node.registerMethod, "cli");
    assert.equal(t.state.nodeByNodeKey(nkey)!.id, node.id);

    await assert.rejects(t.control.authRequests.register(id, alice.id), /already decided/);
  });
});

Deno.test("register: a rejected login reaches the client as an error", async () => {
  await withControl(async (t) => {
    const mkey = randomKey("mkey:");
    const nkey = randomKey("nodekey:");
    const first = await register(t, mkey, registerBody(nkey));
    const id = first.json!.AuthURL.split("/").pop()!;
    const followup = register(t, mkey, registerBody(nkey, { Followup: first.json!.AuthURL }));
    await new Promise((r) => setTimeout(r, 20));
    await t.control.authRequests.reject(id, "not on my watch");
    const done = await followup;
    assert.equal(done.json!.Error, "not on my watch");
    assert.equal(t.state.nodeCount, 0);
  });
});

Deno.test("register: a Followup times out with the same URL; a stranger's or unknown id starts over", async () => {
  await withControl(async (t) => {
    const mkey = randomKey("mkey:");
    const nkey = randomKey("nodekey:");
    const first = await register(t, mkey, registerBody(nkey));
    const url = first.json!.AuthURL;
    const waited = await register(t, mkey, registerBody(nkey, { Followup: url }));
    assert.equal(waited.json!.AuthURL, url);

    // Another machine presenting this URL does not get to wait on it.
    const stranger = await register(
      t,
      randomKey("mkey:"),
      registerBody(randomKey("nodekey:"), { Followup: url }),
    );
    assert.notEqual(stranger.json!.AuthURL, url);
    assert.match(stranger.json!.AuthURL, /\/register\//);

    const unknown = await register(
      t,
      mkey,
      registerBody(nkey, { Followup: "http://127.0.0.1:8080/register/AAAAAAAAAAAAAAAAAAAAAAAA" }),
    );
    assert.match(unknown.json!.AuthURL, /\/register\//);
    assert.notEqual(
      unknown.json!.AuthURL,
      "http://127.0.0.1:8080/register/AAAAAAAAAAAAAAAAAAAAAAAA",
    );

    const garbage = await register(t, mkey, registerBody(nkey, { Followup: "::::" }));
    assert.equal(garbage.status, 400);
  }, { tuning: { followupWaitMs: 30 } });
});

Deno.test("register: auth ids are 24 letters and digits (never read as a CLI flag)", async () => {
  const { newAuthId } = await import("../lib/auth_requests/ids.ts");
  const ids = new Set(Array.from({ length: 2000 }, () => newAuthId()));
  assert.equal(ids.size, 2000);
  for (const id of ids) assert.match(id, /^[A-Za-z0-9]{24}$/);
});

Deno.test("register: approving a re-authentication keeps the machine's owner and tags", async () => {
  await withControl(async (t) => {
    const key = await t.authKey({ user: null, tags: ["tag:server"] });
    const mkey = randomKey("mkey:");
    const old = randomKey("nodekey:");
    await register(t, mkey, registerBody(old, { Auth: { AuthKey: key } }));
    const before = t.state.nodeByNodeKey(old)!;

    // --force-reauth: a new node key, no auth key → interactive.
    const fresh = randomKey("nodekey:");
    const first = await register(t, mkey, registerBody(fresh, { OldNodeKey: old }));
    const id = first.json!.AuthURL.split("/").pop()!;
    const followup = register(
      t,
      mkey,
      registerBody(fresh, { OldNodeKey: old, Followup: first.json!.AuthURL }),
    );
    const node = (await t.control.authRequests.approve(id))!;
    assert.equal((await followup).json!.MachineAuthorized, true);
    assert.equal(node.id, before.id);
    assert.deepEqual(node.tags, ["tag:server"]);
    assert.equal(node.nodeKey, fresh);

    // A machine that never registered must be registered for a user instead.
    const stranger = await register(t, randomKey("mkey:"), registerBody(randomKey("nodekey:")));
    const strangerId = stranger.json!.AuthURL.split("/").pop()!;
    await assert.rejects(t.control.authRequests.approve(strangerId), /auth register --user/);
    assert.equal(t.control.authRequests.list().find((p) => p.id === strangerId)!.status, "pending");
  });
});
