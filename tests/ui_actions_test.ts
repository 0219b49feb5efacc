/**
 * Every admin UI action over HTTP against a real server: it changes the state as the CLI's
 * command does (the same API call), shows the API's error when refused, and writes an audit row
 * naming the admin, the action and the target. Plus the Machines page's live rows over /events.
 */
import assert from "node:assert/strict";
import { Browser, signInWithLink, startUiServer, type UiServer } from "./helpers/ui.ts";
import { registerTestNode } from "./helpers/memory_state.ts";

interface AuditJson {
  actor: string;
  action: string;
  target: string;
  details: string;
  clientAddr: string;
}

async function lastAudit(ui: UiServer): Promise<AuditJson> {
  const [e] = JSON.parse((await ui.cli("audit", "list", "-n", "1", "-o", "json")).out);
  return e;
}

async function withSignedIn(fn: (ui: UiServer, b: Browser) => Promise<void>) {
  const ui = await startUiServer();
  try {
    const b = new Browser(ui.base);
    await signInWithLink(ui, b, "ops");
    await fn(ui, b);
  } finally {
    await ui.close();
  }
}

Deno.test("ui actions: users are created, renamed and deleted as with the CLI, each audited", async () => {
  await withSignedIn(async (ui, b) => {
    let res = await b.submit("/admin/users/create", {
      name: "alice",
      display_name: "Alice",
      email: "alice@example.com",
    });
    assert.equal(res.status, 303);
    assert.match((await b.follow(res)).text, /User alice created/);
    const [cliUser] = JSON.parse((await ui.cli("users", "list", "-o", "json")).out);
    assert.equal(cliUser.name, "alice");
    assert.equal(cliUser.displayName, "Alice");
    assert.equal(cliUser.email, "alice@example.com");
    let e = await lastAudit(ui);
    assert.deepEqual([e.actor, e.action, e.target], ["link:ops", "user.create", "user:alice"]);

    // The API's own validation and message.
    res = await b.submit("/admin/users/create", { name: "alice" });
    const dup = await b.follow(res);
    assert.match(dup.text, /class="flash error"/);
    assert.match(dup.text, /already exists/);
    e = await lastAudit(ui);
    assert.match(e.details, /"error":/);

    const id = String(cliUser.id);
    res = await b.submit("/admin/users/rename", { id, name: "alice2" });
    assert.match((await b.follow(res)).text, /Renamed to alice2/);
    assert.equal(ui.server.state.getUser(Number(id))?.name, "alice2");
    assert.equal((await lastAudit(ui)).action, "user.rename");

    // The delete page says what happens first; a user with nodes cannot be deleted.
    await registerTestNode(ui.server.state, Number(id), "laptop");
    let confirm = await b.page(`/admin/users/delete?id=${id}`);
    assert.match(confirm.text, /still owns 1 nodes/);
    assert.match(confirm.text, /laptop/);
    assert.doesNotMatch(confirm.text, /action="\/admin\/users\/delete"/);
    res = await b.submit("/admin/users/delete", { id, confirm: "yes" });
    assert.match((await b.follow(res)).text, /still owns nodes/);
    assert.ok(ui.server.state.getUser(Number(id)));

    await ui.cli("nodes", "delete", "-i", "1", "--force");
    await ui.cli("preauthkeys", "create", "-u", id);
    confirm = await b.page(`/admin/users/delete?id=${id}`);
    assert.match(confirm.text, /owns no nodes/);
    assert.match(confirm.text, /1 pre-auth keys \(#1\) are deleted with it/);
    res = await b.submit("/admin/users/delete", { id, confirm: "yes" });
    assert.match((await b.follow(res)).text, /User alice2 deleted/);
    assert.deepEqual(ui.server.state.listUsers(), []);
    assert.deepEqual(ui.server.state.listPreAuthKeys(), []);
    assert.deepEqual(
      [(await lastAudit(ui)).action, (await lastAudit(ui)).target],
      ["user.delete", `user:${id}`],
    );
  });
});

Deno.test("ui actions: pre-auth and API keys are shown once, work, and are expired and deleted", async () => {
  await withSignedIn(async (ui, b) => {
    const user = await ui.server.state.createUser({ name: "bob" });
    const res = await b.post("/admin/keys/preauth/create", {
      csrf: await b.csrf(),
      user: String(user.id),
      reusable: "yes",
      tags: "",
      lifetime: String(86400_000),
    });
    const page = await res.text();
    assert.equal(res.status, 200);
    assert.equal(res.headers.get("cache-control"), "no-store");
    const key = /<code id="new-key">(hskey-auth-[^<]+)<\/code>/.exec(page)![1];
    assert.match(
      page,
      new RegExp(`tailscale up --login-server=${ui.base} --authkey=${key}`),
    );
    assert.match(page, /data-copy="tailscale-up"/);
    const record = await ui.server.state.checkPreAuthKey(key);
    assert.equal(record.userId, user.id);
    assert.equal(record.reusable, true);
    const e = await lastAudit(ui);
    assert.equal(e.action, "preauth-key.create");
    assert.doesNotMatch(
      JSON.stringify(e),
      new RegExp(key.slice(-64)),
      "no secret in the audit log",
    );
    // Listed masked only.
    const list = await b.page("/admin/keys");
    assert.doesNotMatch(list.text, new RegExp(key.slice(-64)));

    let r = await b.submit("/admin/keys/preauth/expire", { id: String(record.id) });
    assert.match((await b.follow(r)).text, /pre-auth key 1 expired/);
    await assert.rejects(ui.server.state.checkPreAuthKey(key));
    r = await b.submit("/admin/keys/preauth/delete", { id: String(record.id) });
    assert.equal(r.status, 303);
    assert.deepEqual(ui.server.state.listPreAuthKeys(), []);

    // A tags-only key without tags is the API's error.
    r = await b.submit("/admin/keys/preauth/create", { user: "0", tags: "" });
    assert.match((await b.follow(r)).text, /class="flash error"/);

    const apiRes = await b.post("/admin/keys/api/create", {
      csrf: await b.csrf(),
      lifetime: String(86400_000),
    });
    const apiPage = await apiRes.text();
    const apiKey = /<code id="new-key">(hskey-api-[^<]+)<\/code>/.exec(apiPage)![1];
    assert.equal(await ui.server.state.checkApiKey(apiKey), true);
    const [listed] = ui.server.state.listApiKeys();
    r = await b.submit("/admin/keys/api/expire", { id: String(listed.id) });
    assert.equal(r.status, 303);
    assert.equal(await ui.server.state.checkApiKey(apiKey), false);
    r = await b.submit("/admin/keys/api/delete", { id: String(listed.id) });
    assert.deepEqual(ui.server.state.listApiKeys(), []);
    assert.equal((await lastAudit(ui)).action, "api-key.delete");
  });
});

Deno.test("ui actions: machines are renamed, moved, tagged, given routes, expired and deleted", async () => {
  await withSignedIn(async (ui, b) => {
    const state = ui.server.state;
    const alice = await state.createUser({ name: "alice" });
    const bob = await state.createUser({ name: "bob" });
    const node = await registerTestNode(state, alice.id, "laptop", {
      hostinfo: {
        Hostname: "laptop",
        OS: "linux",
        RoutableIPs: ["10.1.0.0/24", "0.0.0.0/0", "::/0"],
      },
    });
    const id = String(node.id);
    const list = await b.page("/admin/machines");
    assert.match(list.text, new RegExp(`data-node-id="${id}"`));
    assert.match(list.text, /data-online="false"/);
    assert.match(list.text, /10\.1\.0\.0\/24/);
    assert.match(list.text, /laptop\.tailnet\.internal/);

    let r = await b.submit("/admin/machines/rename", { id, name: "work-laptop" });
    assert.match((await b.follow(r)).text, /Renamed to work-laptop/);
    const [cliNode] = JSON.parse((await ui.cli("nodes", "list", "-o", "json")).out);
    assert.equal(cliNode.givenName, "work-laptop");
    let e = await lastAudit(ui);
    assert.deepEqual([e.action, e.target], ["node.rename", `node:${id}`]);

    r = await b.submit("/admin/machines/rename", { id, name: "Not Valid!" });
    assert.match((await b.follow(r)).text, /class="flash error"/);
    assert.equal(state.getNode(node.id)?.givenName, "work-laptop");

    r = await b.submit("/admin/machines/move", { id, user: String(bob.id) });
    assert.match((await b.follow(r)).text, /Moved/);
    assert.equal(state.getNode(node.id)?.userId, bob.id);
    assert.equal((await lastAudit(ui)).action, "node.move");
    // The CLI's `nodes move` is the same call.
    const moved = await ui.cli("nodes", "move", "-i", id, "-u", "alice");
    assert.equal(moved.code, 0, moved.err);
    assert.equal(state.getNode(node.id)?.userId, alice.id);

    r = await b.submit("/admin/machines/routes", { id, route: "10.1.0.0/24" });
    assert.equal(r.status, 303);
    assert.deepEqual(state.getNode(node.id)?.approvedRoutes, ["10.1.0.0/24"]);
    // Approving the exit node: both exit routes, as `nodes approve-routes` takes them.
    const form = new URLSearchParams({ csrf: await b.csrf(), id });
    for (const route of ["10.1.0.0/24", "0.0.0.0/0", "::/0"]) form.append("route", route);
    const multi = await fetch(`${ui.base}/admin/machines/routes`, {
      method: "POST",
      redirect: "manual",
      headers: {
        "content-type": "application/x-www-form-urlencoded",
        cookie: [...b.cookies].map(([k, v]) => `${k}=${v}`).join("; "),
        origin: ui.base,
      },
      body: form.toString(),
    });
    await multi.body?.cancel();
    assert.deepEqual(state.getNode(node.id)?.approvedRoutes.sort(), [
      "0.0.0.0/0",
      "10.1.0.0/24",
      "::/0",
    ]);
    assert.match(
      (await b.page(`/admin/machines/node?id=${id}`)).text,
      /exit node <span class="badge ok">approved/,
    );

    r = await b.submit("/admin/machines/expire", { id });
    assert.equal(r.status, 303);
    assert.ok(state.isExpired(state.getNode(node.id)!));
    assert.equal((await lastAudit(ui)).action, "node.expire");

    r = await b.submit("/admin/machines/tags", { id, tags: "tag:server" });
    const tagged = await b.follow(r);
    // Without a policy giving the tag to someone, the API decides (same as `nodes tag`).
    const cli = await ui.cli("nodes", "tag", "-i", id, "-t", "tag:server");
    assert.equal(/class="flash ok"/.test(tagged.text), cli.code === 0, cli.err);
    if (cli.code === 0) {
      assert.deepEqual(state.getNode(node.id)?.tags, ["tag:server"]);
      r = await b.submit("/admin/machines/move", { id, user: String(alice.id) });
      assert.match((await b.follow(r)).text, /tagged nodes belong to no user/);
    }

    // Delete needs the confirmation box.
    r = await b.submit("/admin/machines/delete", { id });
    assert.match((await b.follow(r)).text, /Tick the box/);
    assert.ok(state.getNode(node.id));
    r = await b.submit("/admin/machines/delete", { id, confirm: "yes" });
    assert.match((await b.follow(r)).text, /Deleted work-laptop/);
    assert.equal(state.getNode(node.id), undefined);
    e = await lastAudit(ui);
    assert.deepEqual([e.actor, e.action, e.target], ["link:ops", "node.delete", `node:${id}`]);
  });
});

Deno.test("ui actions: a pending registration is registered to the chosen user from the Pending page", async () => {
  await withSignedIn(async (ui, b) => {
    await ui.server.state.createUser({ name: "carol" });
    const authId = "hskey-authreq-" + "A".repeat(24);
    const created = await ui.cli(
      "debug",
      "create-node",
      "--name",
      "box",
      "-u",
      "carol",
      "-k",
      authId,
    );
    assert.equal(created.code, 0, created.err);
    const page = await b.page("/admin/pending");
    assert.match(page.text, new RegExp(`data-auth-id="${authId}"`));
    assert.match(page.text, /box/);
    const carol = ui.server.state.getUserByName("carol")!;
    const r = await b.submit("/admin/pending/register", {
      auth_id: authId,
      user: String(carol.id),
    });
    assert.match((await b.follow(r)).text, /Registered/);
    const [node] = ui.server.state.listNodes();
    assert.equal(node.userId, carol.id);
    assert.equal(node.hostname, "box");
    const e = await lastAudit(ui);
    assert.deepEqual([e.action, e.target], ["auth.register", `auth:${authId}`]);
    // Used up: rejecting it now is the API's not-found.
    const again = await b.submit("/admin/pending/reject", { auth_id: authId });
    assert.match((await b.follow(again)).text, /class="flash error"/);
  });
});

Deno.test("ui: the Machines page's rows are pushed live over /events (new node, online, offline)", async () => {
  await withSignedIn(async (ui, b) => {
    const state = ui.server.state;
    const user = await state.createUser({ name: "dave" });
    const unauth = await fetch(`${ui.base}/admin/events`);
    await unauth.body?.cancel();
    assert.equal(unauth.status, 403);

    const res = await b.get("/admin/events");
    assert.equal(res.status, 200);
    assert.match(res.headers.get("content-type")!, /^text\/event-stream/);
    const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    const nextRow = async (pred: (row: { key: string; html?: string }) => boolean) => {
      for (;;) {
        const frames = buffer.split("\n\n");
        buffer = frames.pop()!;
        for (const f of frames) {
          const data = /^data: (.*)$/m.exec(f)?.[1];
          if (/^event: row$/m.test(f) && data) {
            const row = JSON.parse(data);
            if (pred(row)) {
              buffer = frames.slice(frames.indexOf(f) + 1).join("\n\n") +
                (buffer ? "\n\n" + buffer : "");
              return row;
            }
          }
        }
        const { value, done } = await reader.read();
        if (done) throw new Error("event stream ended");
        buffer += value;
      }
    };
    const node = await registerTestNode(state, user.id, "phone");
    const added = await nextRow((r) => r.key === String(node.id));
    assert.match(added.html!, new RegExp(`data-node-id="${node.id}"`));
    assert.match(added.html!, /data-online="false"/);
    state.streamOpened(node.id);
    const online = await nextRow((r) =>
      r.key === String(node.id) && /data-online="true"/.test(r.html ?? "")
    );
    assert.ok(online);
    state.streamClosed(node.id);
    await nextRow((r) => r.key === String(node.id) && /data-online="false"/.test(r.html ?? ""));
    await state.deleteNode(node.id);
    const removed = await nextRow((r) => r.key === String(node.id) && !r.html);
    assert.deepEqual(removed, { target: "machines", key: String(node.id), remove: true });
    await reader.cancel();
  });
});
