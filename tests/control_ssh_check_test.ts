/**
 * Tailscale SSH check mode: the /machine/ssh/action flow (hold, approve, reject, check period,
 * bindings) and the policy's answer to "which check period covers src → dst".
 */
import assert from "node:assert/strict";
import { AuthRequestRegistry } from "../lib/auth_requests/registry.ts";
import { SshChecks } from "../lib/control/ssh_check.ts";
import { HttpError } from "../lib/control/http_util.ts";
import { NotFoundError } from "../lib/state/errors.ts";
import { silentLogger } from "../lib/log/log.ts";
import { parsePolicy, PolicyEngine } from "../lib/policy/mod.ts";
import { policyNode } from "./helpers/policy_nodes.ts";
import type { NodeRecord } from "../lib/store/types.ts";

const DST_KEY = "mkey:" + "d".repeat(64);
const OTHER_KEY = "mkey:" + "e".repeat(64);

function setup(periodMs: number | null = 60_000) {
  let now = 1_000_000;
  const period = { value: periodMs };
  // Approve, reject and close go through the registry the checks wait in.
  const requests = new AuthRequestRegistry({ now: () => now });
  const checks = new SshChecks({
    requests,
    getNode: (id) => id === 2 ? { id: 2, machineKey: DST_KEY } as NodeRecord : undefined,
    checkPeriodMs: (src, dst) => src === 1 && dst === 2 ? period.value : null,
    serverUrl: "https://hs.example.com/",
    log: silentLogger(),
    now: () => now,
  });
  return { checks, requests, period, advance: (ms: number) => now += ms };
}

/** The auth id of a hold action, from its HoldAndDelegate URL. */
function authIdOf(action: { holdAndDelegate?: string }): string {
  assert.ok(action.holdAndDelegate, "a hold action");
  const id = new URL(action.holdAndDelegate.replace(/\$/g, "")).searchParams.get("auth_id");
  assert.ok(id);
  return id;
}

Deno.test("ssh check: a first connection is held with a link; approve lets it in", async () => {
  const { checks, requests } = setup();
  const hold = await checks.action(1, 2, null, DST_KEY);
  assert.equal(hold.accept, undefined);
  const id = authIdOf(hold);
  assert.match(
    hold.holdAndDelegate!,
    /^https:\/\/hs\.example\.com\/machine\/ssh\/action\/\$SRC_NODE_ID\/to\/\$DST_NODE_ID\?/,
  );
  assert.ok(hold.message?.includes(`https://hs.example.com/auth/${id}`), hold.message);
  assert.ok(checks.has(id));

  const followUp = checks.action(1, 2, id, DST_KEY);
  await requests.approve(id);
  const verdict = await followUp;
  assert.equal(verdict.accept, true);
  assert.equal(verdict.allowAgentForwarding, true);
  assert.ok(!checks.has(id), "decided checks are no longer pending");
  await assert.rejects(requests.approve(id), NotFoundError);
});

Deno.test("ssh check: reject refuses the held connection", async () => {
  const { checks, requests } = setup();
  const id = authIdOf(await checks.action(1, 2, null, DST_KEY));
  const followUp = checks.action(1, 2, id, DST_KEY);
  await requests.reject(id);
  assert.deepEqual((await followUp).reject, true);
  assert.equal((await followUp).accept, undefined);
});

Deno.test("ssh check: an approval made before the follow-up arrives is kept for it", async () => {
  const { checks, requests } = setup();
  const id = authIdOf(await checks.action(1, 2, null, DST_KEY));
  await requests.approve(id);
  assert.equal((await checks.action(1, 2, id, DST_KEY)).accept, true);
  // Used once: asking again with the same id starts a new check.
  assert.ok((await checks.action(1, 2, id, DST_KEY)).holdAndDelegate);
});

Deno.test("ssh check: within the check period the pair is let in without asking", async () => {
  const { checks, requests, advance, period } = setup(60_000);
  const id = authIdOf(await checks.action(1, 2, null, DST_KEY));
  await requests.approve(id);
  await checks.action(1, 2, id, DST_KEY);
  assert.equal((await checks.action(1, 2, null, DST_KEY)).accept, true);
  advance(61_000);
  assert.ok((await checks.action(1, 2, null, DST_KEY)).holdAndDelegate, "period over: ask again");

  // checkPeriod "always" (0): every connection is checked.
  period.value = 0;
  const again = authIdOf(await checks.action(1, 2, null, DST_KEY));
  await requests.approve(again);
  await checks.action(1, 2, again, DST_KEY);
  assert.ok((await checks.action(1, 2, null, DST_KEY)).holdAndDelegate);
});

Deno.test("ssh check: a policy change forgets approvals", async () => {
  const { checks, requests } = setup(60_000);
  const id = authIdOf(await checks.action(1, 2, null, DST_KEY));
  await requests.approve(id);
  await checks.action(1, 2, id, DST_KEY);
  checks.forgetApprovals();
  assert.ok((await checks.action(1, 2, null, DST_KEY)).holdAndDelegate);
});

Deno.test("ssh check: only the destination may ask, and an id is bound to its pair", async () => {
  const { checks } = setup();
  await assert.rejects(
    checks.action(1, 2, null, OTHER_KEY),
    (e: HttpError) => e.status === 401,
  );
  await assert.rejects(checks.action(1, 9, null, DST_KEY), (e: HttpError) => e.status === 404);
  const id = authIdOf(await checks.action(1, 2, null, DST_KEY));
  await assert.rejects(checks.action(3, 2, id, DST_KEY), (e: HttpError) => e.status === 401);
  await assert.rejects(
    checks.action(1, 2, "not an id!", DST_KEY),
    (e: HttpError) => e.status === 400,
  );
  assert.ok(checks.has(id), "a refused follow-up leaves the check pending");
});

Deno.test("ssh check: an unknown id starts over while a check is required, else is refused", async () => {
  const { checks, period } = setup();
  const unknown = "A".repeat(24);
  assert.ok((await checks.action(1, 2, unknown, DST_KEY)).holdAndDelegate);
  period.value = null;
  await assert.rejects(checks.action(1, 2, unknown, DST_KEY), (e: HttpError) => e.status === 400);
});

Deno.test("ssh check: a follow-up whose client goes away, or whose check expires, ends", async () => {
  const { checks } = setup();
  const id = authIdOf(await checks.action(1, 2, null, DST_KEY));
  const abort = new AbortController();
  const gone = checks.action(1, 2, id, DST_KEY, abort.signal);
  abort.abort();
  await assert.rejects(gone, (e: HttpError) => e.status === 401);
  assert.ok(checks.has(id), "the check itself is still pending");

  const short = new SshChecks({
    requests: new AuthRequestRegistry({ ttlMs: 30 }),
    getNode: () => ({ id: 2, machineKey: DST_KEY }) as NodeRecord,
    checkPeriodMs: () => 0,
    serverUrl: "http://127.0.0.1:8080",
    log: silentLogger(),
  });
  const expiring = authIdOf(await short.action(1, 2, null, DST_KEY));
  assert.equal((await short.action(1, 2, expiring, DST_KEY)).reject, true);
  assert.ok(!short.has(expiring));
});

Deno.test("ssh check: close refuses every waiting check", async () => {
  const { checks, requests } = setup();
  const id = authIdOf(await checks.action(1, 2, null, DST_KEY));
  const followUp = checks.action(1, 2, id, DST_KEY);
  requests.close();
  assert.equal((await followUp).reject, true);
});

Deno.test("policy: the check period of the first check rule covering src → dst", () => {
  const users = [
    { id: 1, name: "alice", email: "alice@example.com" },
    { id: 2, name: "bob", email: "bob@example.com" },
  ];
  const node = policyNode;
  const nodes = [
    node(1, { userId: 1 }),
    node(2, { userId: 1 }),
    node(3, { userId: 2 }),
    node(4, { tags: ["tag:server"] }),
    node(5, { tags: ["tag:db"] }),
  ];
  const policy = parsePolicy(JSON.stringify({
    tagOwners: { "tag:server": ["alice@example.com"], "tag:db": ["alice@example.com"] },
    acls: [{ action: "accept", src: ["*"], dst: ["*:*"] }],
    ssh: [
      { action: "accept", src: ["bob@example.com"], dst: ["tag:server"], users: ["root"] },
      {
        action: "check",
        src: ["autogroup:member"],
        dst: ["tag:server"],
        users: ["root"],
        checkPeriod: "1h",
      },
      { action: "check", src: ["autogroup:member"], dst: ["autogroup:self"], users: ["root"] },
      {
        action: "check",
        src: ["alice@example.com"],
        dst: ["tag:db"],
        users: ["root"],
        checkPeriod: "always",
      },
    ],
  }));
  const e = new PolicyEngine(policy, users, nodes);
  assert.equal(e.sshCheckPeriodMs(1, 4), 3600_000, "first matching check rule: 1h");
  assert.equal(e.sshCheckPeriodMs(3, 4), 3600_000, "accept rules are not check rules");
  assert.equal(e.sshCheckPeriodMs(1, 2), 12 * 3600_000, "no checkPeriod: 12h");
  assert.equal(e.sshCheckPeriodMs(1, 5), 0, "always");
  assert.equal(e.sshCheckPeriodMs(3, 5), null, "the tag:db rule is alice's only");
  assert.equal(e.sshCheckPeriodMs(3, 1), null, "no check rule lets bob in to alice's node");
  assert.equal(e.sshCheckPeriodMs(4, 1), null, "tagged nodes are not members");
  assert.equal(e.sshCheckPeriodMs(1, 99), null, "unknown node");
});
