/**
 * The admin UI's Policy page: checking a draft with the server's own gate (errors at their
 * line), the preview of who gains and loses access, and saving only what was reviewed.
 */
import assert from "node:assert/strict";
import { PolicyManager } from "../lib/policy_manager/manager.ts";
import { parseConfigText } from "../lib/config/load.ts";
import { silentLogger } from "../lib/log/log.ts";
import { checkDraft, reviewDigest, saveDraft } from "../lib/ui/policy_check.ts";
import { summarizeAccessDiff } from "../lib/ui/policy_preview.ts";
import { PolicyInvalidError } from "../lib/policy_manager/errors.ts";
import { openMemoryState } from "./helpers/memory_state.ts";
import { Browser, signInWithLink, startUiServer, type UiServer } from "./helpers/ui.ts";

const hex = (n: number) => n.toString(16).padStart(64, "0");

const WEB_80 = `{
  "tagOwners": { "tag:web": ["alice@"] },
  "acls": [
    { "action": "accept", "proto": "tcp", "src": ["alice@"], "dst": ["tag:web:80"] },
  ],
}`;

async function setup(mode: "file" | "database" = "database") {
  const config = parseConfigText(`policy:\n  mode: ${mode}\n  path: ""\n`).config;
  const { store, state } = await openMemoryState({ config });
  const alice = await state.createUser({ name: "alice" });
  const register = (n: number, hostname: string, tags: string[]) =>
    state.registerNode({
      machineKey: `mkey:${hex(n)}`,
      nodeKey: `nodekey:${hex(n)}`,
      hostname,
      hostinfo: { Hostname: hostname },
      userId: alice.id,
      tags,
      authKeyId: null,
      method: "cli",
      ephemeral: false,
      expiry: null,
    });
  await register(1, "alice-laptop", []);
  await register(2, "web-1", ["tag:web"]);
  const manager = await PolicyManager.open({ config, store, state, log: silentLogger() });
  manager.attach({ setPolicy: () => {} });
  state.subscribe((changes) => manager.apply(changes));
  await manager.set(WEB_80);
  // As the page saves: the call answers null or the refusal's message.
  const save = async (draft: string) => {
    try {
      await manager.set(draft);
      return null;
    } catch (e) {
      if (e instanceof PolicyInvalidError) return e.message;
      throw e;
    }
  };
  return {
    manager,
    save,
    async [Symbol.asyncDispose]() {
      manager.close();
      await store.close();
    },
  };
}

Deno.test("a draft that does not parse comes back with the error at its line", async () => {
  await using t = await setup();
  const draft = WEB_80.replace(`"dst": ["tag:web:80"]`, `"dst": ["tag:db:80"]`);
  const check = await checkDraft(t.manager, draft);
  assert.equal(check.ok, false);
  if (check.ok) return;
  assert.equal(check.problems.length, 1);
  assert.match(check.problems[0].message, /tag:db/);
  assert.equal(check.problems[0].line, 4);
});

Deno.test("a draft whose own tests fail is refused with each failure on its test", async () => {
  await using t = await setup();
  const draft = WEB_80.replace(
    /\n}$/,
    `\n  "tests": [\n    { "src": "alice@", "accept": ["tag:web:22"] },\n  ],\n}`,
  );
  const check = await checkDraft(t.manager, draft);
  assert.equal(check.ok, false);
  if (check.ok) return;
  assert.equal(check.problems.length, 1);
  assert.match(check.problems[0].message, /tests failed.*tag:web:22/);
  assert.equal(check.problems[0].line, 7);
});

Deno.test("the preview names who gains and who loses what, and whether SSH changes", async () => {
  await using t = await setup();
  const draft = WEB_80.replace(`"tag:web:80"`, `"tag:web:22"`).replace(
    /\n}$/,
    `\n  "ssh": [{ "action": "accept", "src": ["alice@"], "dst": ["tag:web"], "users": ["root"] }],\n}`,
  );
  const check = await checkDraft(t.manager, draft);
  assert.ok(check.ok, JSON.stringify(check));
  assert.equal(
    check.preview.summary,
    "1 node gains access; 1 node loses access; SSH rules change on 1 node.",
  );
  assert.deepEqual(check.preview.access, [{
    source: "alice-laptop",
    lines: [
      { kind: "gain", text: "gains tcp:22 on web-1" },
      { kind: "loss", text: "loses tcp:80 on web-1" },
    ],
  }]);
  assert.deepEqual(check.preview.ssh, [{
    source: "alice-laptop",
    lines: [{ kind: "gain", text: "may log in to web-1 as root" }],
  }]);
  assert.equal(check.reviewed, reviewDigest(WEB_80, draft));
});

Deno.test("saving needs the review of exactly this draft over the policy in force", async () => {
  await using t = await setup();
  const draft = WEB_80.replace(`"tag:web:80"`, `"tag:web:443"`);
  // Not reviewed: nothing is saved, the preview comes back instead.
  const unreviewed = await saveDraft(t.manager, draft, "", t.save);
  assert.equal(unreviewed.saved, false);
  assert.ok(!unreviewed.saved && unreviewed.check.ok);
  assert.equal((await t.manager.get()).policy, WEB_80);
  // Reviewed over another policy in force: the same.
  const stale = await saveDraft(t.manager, draft, reviewDigest("{}", draft), t.save);
  assert.equal(stale.saved, false);
  // Reviewed: saved through the manager (stored and in force).
  const check = await checkDraft(t.manager, draft);
  assert.ok(check.ok);
  assert.deepEqual(await saveDraft(t.manager, draft, check.reviewed, t.save), { saved: true });
  assert.equal((await t.manager.get()).policy, draft);
});

Deno.test("an invalid draft is never saved and the old policy stays in force", async () => {
  await using t = await setup();
  const bad =
    `{\n  "acls": [\n    { "action": "accept", "src": ["group:nope"], "dst": ["*:*"] },\n  ],\n}`;
  const outcome = await saveDraft(t.manager, bad, reviewDigest(WEB_80, bad), t.save);
  assert.equal(outcome.saved, false);
  assert.ok(!outcome.saved && !outcome.check.ok);
  assert.equal(outcome.check.problems[0].line, 3);
  assert.equal((await t.manager.get()).policy, WEB_80);
});

// ---- the page, over HTTP against a real server -----------------------------------------------

async function registerNodes(ui: UiServer) {
  const { state } = ui.server;
  const alice = await state.createUser({ name: "alice" });
  for (const [n, hostname, tags] of [[1, "alice-laptop", []], [2, "web-1", ["tag:web"]]] as const) {
    await state.registerNode({
      machineKey: `mkey:${hex(n)}`,
      nodeKey: `nodekey:${hex(n)}`,
      hostname,
      hostinfo: { Hostname: hostname },
      userId: alice.id,
      tags: [...tags],
      authKeyId: null,
      method: "cli",
      ephemeral: false,
      expiry: null,
    });
  }
}

Deno.test("ui policy page: check as you type, preview, save only what was reviewed, refuse a bad policy at its line", async () => {
  const ui = await startUiServer("policy:\n  mode: database\n");
  try {
    await registerNodes(ui);
    const b = new Browser(ui.base);
    await signInWithLink(ui, b, "alice");
    const csrf = await b.csrf("/admin/policy");
    const page = await b.page("/admin/policy");
    assert.equal(page.status, 200);
    assert.match(page.text, /<textarea id="policy-text" name="policy"/);
    assert.match(page.text, /No policy is in force/);
    assert.match(page.text, /<script src="\/admin\/policy\/editor\.js" defer><\/script>/);
    const script = await b.get("/admin/policy/editor.js");
    assert.equal(script.status, 200);
    assert.match(script.headers.get("content-type") ?? "", /^text\/javascript/);
    assert.match(await script.text(), /data-check-url/);

    // The JSON check: a bad draft comes back with its problem at its line.
    const bad =
      `{\n  "acls": [\n    { "action": "accept", "src": ["group:nope"], "dst": ["*:*"] },\n  ],\n}`;
    const checked = await b.post("/admin/policy/check", { csrf, policy: bad });
    assert.equal(checked.status, 200);
    assert.match(checked.headers.get("content-type") ?? "", /^application\/json/);
    const answer = await checked.json();
    assert.equal(answer.ok, false);
    assert.equal(answer.problems[0].line, 3);
    assert.match(answer.html, /data-line="3"/);

    // A good draft: the preview, and the digest the save needs.
    const good = await (await b.post("/admin/policy/check", { csrf, policy: WEB_80 })).json();
    assert.equal(good.ok, true);
    assert.match(good.html, /alice-laptop/);
    // From allow-all to alice → web-1 tcp:80: alice keeps only that, web-1 loses alice entirely.
    assert.match(good.html, /2 nodes lose access; SSH rules do not change\./);
    assert.match(good.html, /loses icmp, tcp:0-79, tcp:81-65535, udp:\* on web-1/);
    assert.match(
      good.html,
      /<dt>web-1<\/dt><dd class="loss">.*loses icmp, tcp:\*, udp:\* on alice-laptop/,
    );

    // Without the review's digest nothing is saved: the page shows the preview and asks again.
    const unreviewed = await b.post("/admin/policy/save", { csrf, policy: WEB_80, reviewed: "" });
    assert.equal(unreviewed.status, 200);
    const unreviewedText = await unreviewed.text();
    assert.match(unreviewedText, /Not saved yet/);
    assert.match(unreviewedText, new RegExp(`name="reviewed" value="${good.reviewed}"`));
    assert.equal(await ui.server.store.getPolicy(), null);

    // With it: saved through the API, in force, audited. (A browser posts the textarea's line
    // breaks as CRLF; the script checked the text with LF: the same draft.)
    const saved = await b.post("/admin/policy/save", {
      csrf,
      policy: WEB_80.replaceAll("\n", "\r\n"),
      reviewed: good.reviewed,
    });
    assert.equal(saved.status, 303);
    const after = await b.follow(saved);
    assert.match(after.text, /Policy saved and in force/);
    assert.equal(await ui.server.store.getPolicy(), WEB_80);
    const policyGet = await ui.cli("policy", "get");
    assert.equal(policyGet.out.trim(), WEB_80.trim());

    // A bad policy is refused at its line; the old one stays.
    const refused = await b.post("/admin/policy/save", {
      csrf,
      policy: bad,
      reviewed: reviewDigest(WEB_80, bad),
    });
    assert.equal(refused.status, 422);
    const refusedText = await refused.text();
    assert.match(refusedText, /Line 3, column \d+/);
    assert.match(refusedText, /group:nope/);
    assert.equal(await ui.server.store.getPolicy(), WEB_80);

    // The review page without script shows the same result.
    const review = await b.post("/admin/policy/review", { csrf, policy: bad });
    assert.equal(review.status, 422);
    assert.match(await review.text(), /data-line="3"/);

    // Without the CSRF token: refused, nothing changes.
    const forged = await b.post("/admin/policy/save", { policy: "{}", reviewed: "" });
    await forged.body?.cancel();
    assert.equal(forged.status, 403);
    const forgedCheck = await b.post("/admin/policy/check", { policy: "{}" });
    await forgedCheck.body?.cancel();
    assert.equal(forgedCheck.status, 403);
    assert.equal(await ui.server.store.getPolicy(), WEB_80);

    const audit = await ui.cli("audit", "list", "-o", "json");
    const events = JSON.parse(audit.out) as { action: string; details?: string }[];
    const sets = events.filter((e) => e.action === "policy.set");
    assert.equal(sets.length, 2, audit.out);
  } finally {
    await ui.close();
  }
});

Deno.test("ui policy page: file mode shows the policy read-only and where it comes from", async () => {
  const dir = await Deno.makeTempDir();
  const path = `${dir}/policy.hujson`;
  await Deno.writeTextFile(path, `{\n  // <b>not markup</b>\n  "acls": []\n}\n`);
  const ui = await startUiServer(`policy:\n  mode: file\n  path: ${path}\n`);
  try {
    const b = new Browser(ui.base);
    await signInWithLink(ui, b);
    const page = await b.page("/admin/policy");
    assert.equal(page.status, 200);
    assert.ok(page.text.includes(`<code>${path}</code>`));
    assert.match(page.text, /Edits go in that file/);
    assert.match(page.text, /&#60;b&#62;not markup&#60;\/b&#62;/);
    assert.ok(!page.text.includes("<textarea"), "no editor");
    const csrf = await b.csrf("/admin/policy");
    const save = await b.post("/admin/policy/save", { csrf, policy: "{}", reviewed: "" });
    await save.body?.cancel();
    assert.equal(save.status, 409);
  } finally {
    await ui.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("the preview caps its lines with a count, and says when the diff stopped early", () => {
  const changes = [1, 2, 3, 4, 5].map((src) => ({
    src,
    dst: 9,
    gained: ["tcp:22"],
    lost: [],
  }));
  const names = (id: number) => `node-${id}`;
  const p = summarizeAccessDiff(
    { changes, ssh: [], filtersChanged: 1, sshChanged: 0, truncated: true },
    names,
    3,
  );
  assert.deepEqual(p.access.map((g) => g.source), ["node-1", "node-2", "node-3"]);
  assert.equal(p.omitted, 2);
  assert.match(p.summary, /^5 nodes gain access; SSH rules do not change\. The change is large/);
});
