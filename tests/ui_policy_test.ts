/**
 * The admin UI's Policy page: checking a draft with the server's own gate (errors at their
 * line), the preview of who gains and loses access, and saving only what was reviewed.
 */
import assert from "node:assert/strict";
import { PolicyManager } from "../lib/policy_manager/manager.ts";
import { parseConfigText } from "../lib/config/load.ts";
import { silentLogger } from "../lib/log/log.ts";
import { checkDraft, reviewDigest, saveDraft } from "../lib/ui/policy_check.ts";
import { PolicyInvalidError } from "../lib/policy_manager/errors.ts";
import { openMemoryState } from "./helpers/memory_state.ts";

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
