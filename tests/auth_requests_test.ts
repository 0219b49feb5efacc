/**
 * The auth-request registry: one id space, one expiry and one bound for every kind, and
 * register / approve / reject / list dispatched to the kind's handler.
 */
import assert from "node:assert/strict";
import {
  type AuthRequest,
  AuthRequestRegistry,
  type KindHandler,
} from "../lib/auth_requests/registry.ts";
import { AlreadyExistsError, InvalidArgumentError, NotFoundError } from "../lib/state/errors.ts";
import type { NodeRecord } from "../lib/store/types.ts";

const DEBUG_ID = "hskey-authreq-AbCdEfGhIjKlMnOpQrStUv_-";

interface Machine {
  hostname: string;
}

/** Handlers that record what they were asked; `refuse` makes the next action throw. */
function setup(opts: { ttlMs?: number; maxEntries?: number } = {}) {
  let now = 1_000_000;
  const calls: string[] = [];
  const control = { refuse: false };
  const node = (id: number) => ({ id }) as NodeRecord;
  const act = (what: string, result: NodeRecord) => {
    calls.push(what);
    if (control.refuse) return Promise.reject(new InvalidArgumentError(`refused: ${what}`));
    return Promise.resolve(result);
  };
  const machineHandler = (noun: string, keepsDecision: boolean): KindHandler<Machine> => ({
    noun,
    keepsDecision,
    register: (r: AuthRequest<Machine>, userId: number) =>
      act(`${noun} register ${r.data.hostname} for ${userId}`, node(userId)),
    approve: (r: AuthRequest<Machine>) => act(`${noun} approve ${r.data.hostname}`, node(99)),
    describe: (m: Machine) => ({ hostname: m.hostname }),
  });
  const registry = new AuthRequestRegistry({ ...opts, now: () => now });
  const logins = registry.kind("login", machineHandler("login", true));
  const debugNodes = registry.kind("debug-node", machineHandler("debug node", false));
  const checks = registry.kind<{ src: number; dst: number }>("ssh-check", {
    noun: "SSH check",
    keepsDecision: true,
    register: () => Promise.reject(new NotFoundError("an SSH check is approved, not registered")),
    approve: () => Promise.resolve(null),
    describe: ({ src, dst }) => ({ src, dst }),
  });
  return {
    registry,
    logins,
    debugNodes,
    checks,
    calls,
    control,
    advance: (ms: number) => now += ms,
  };
}

Deno.test("auth requests: one id space; the server's ids and an admin's never collide", () => {
  const { registry, logins, checks, debugNodes } = setup();
  const login = logins.open({ hostname: "laptop" });
  const check = checks.open({ src: 1, dst: 2 });
  assert.match(login.id, /^[A-Za-z0-9]{24}$/);
  assert.match(check.id, /^[A-Za-z0-9]{24}$/);
  assert.notEqual(login.id, check.id);
  debugNodes.open({ hostname: "box" }, { id: DEBUG_ID });

  // Every kind finds only its own requests.
  assert.equal(logins.get(check.id), undefined);
  assert.equal(checks.get(login.id), undefined);
  assert.equal(debugNodes.get(DEBUG_ID)?.data.hostname, "box");
  // An id taken by another kind is refused; the same kind replaces (headscale's cache).
  assert.throws(
    () => logins.open({ hostname: "x" }, { id: DEBUG_ID }),
    (e) => e instanceof AlreadyExistsError && /taken by a pending debug node/.test(e.message),
  );
  debugNodes.open({ hostname: "box2" }, { id: DEBUG_ID });
  assert.deepEqual(
    registry.list().map((r) => [r.kind, r.status, r.hostname ?? `${r.src}→${r.dst}`]),
    [["login", "pending", "laptop"], ["ssh-check", "pending", "1→2"], [
      "debug-node",
      "pending",
      "box2",
    ]],
  );
});

Deno.test("auth requests: register, approve and reject go to the request's kind", async () => {
  const { registry, logins, checks, debugNodes, calls } = setup();
  const a = logins.open({ hostname: "a" });
  const b = logins.open({ hostname: "b" });
  const check = checks.open({ src: 1, dst: 2 });
  debugNodes.open({ hostname: "box" }, { id: DEBUG_ID });

  assert.equal((await registry.register(a.id, 7)).id, 7);
  assert.equal((await registry.approve(b.id))!.id, 99);
  assert.equal(await registry.approve(check.id), null);
  assert.equal((await registry.register(DEBUG_ID, 3)).id, 3);
  assert.deepEqual(calls, [
    "login register a for 7",
    "login approve b",
    "debug node register box for 3",
  ]);

  // Logins and checks keep their verdict for the client that asks; a debug node is used up.
  assert.deepEqual(a.verdict, { kind: "approved", node: { id: 7 } });
  assert.equal(checks.get(check.id)?.status, "approved");
  assert.equal(debugNodes.get(DEBUG_ID), undefined);
  assert.deepEqual(registry.list().map((r) => [r.kind, r.status]), [
    ["login", "approved"],
    ["login", "approved"],
    ["ssh-check", "approved"],
  ]);

  // A kind may refuse a verb (an SSH check is not registered for a user).
  const other = checks.open({ src: 3, dst: 4 });
  await assert.rejects(registry.register(other.id, 1), /approved, not registered/);
  assert.equal(checks.get(other.id)?.status, "pending");

  // Reject works for every kind; the default reason names the kind.
  const c = logins.open({ hostname: "c" });
  debugNodes.open({ hostname: "box" }, { id: DEBUG_ID });
  await registry.reject(c.id);
  await registry.reject(other.id, "no");
  await registry.reject(DEBUG_ID);
  assert.deepEqual(c.verdict, {
    kind: "rejected",
    reason: "the login was rejected by an administrator",
  });
  assert.deepEqual(checks.get(other.id)?.verdict, { kind: "rejected", reason: "no" });
  assert.equal(debugNodes.get(DEBUG_ID), undefined);
});

Deno.test("auth requests: decided once; unknown ids and failed decisions", async () => {
  const { registry, logins, checks, control } = setup();
  const login = logins.open({ hostname: "a" });
  const check = checks.open({ src: 1, dst: 2 });
  await assert.rejects(
    registry.approve("A".repeat(24)),
    (e) =>
      e instanceof NotFoundError &&
      e.message === `no pending login with auth id ${"A".repeat(24)} (it may have expired)`,
  );

  // A refused decision changes nothing: the request is still pending.
  control.refuse = true;
  await assert.rejects(registry.register(login.id, 1), InvalidArgumentError);
  assert.equal(login.status, "pending");
  control.refuse = false;

  // While the decision is being carried out, and after, nobody decides again.
  const first = registry.register(login.id, 1);
  assert.deepEqual(registry.list()[0].status, "pending", "deciding shows as pending");
  await assert.rejects(registry.reject(login.id), /the login with auth id .* already decided/);
  await first;
  await assert.rejects(registry.approve(login.id), /already decided/);
  await registry.approve(check.id);
  await assert.rejects(
    registry.reject(check.id),
    (e) => e instanceof NotFoundError && /the SSH check with auth id/.test(e.message),
  );
});

Deno.test("auth requests: one expiry for every kind; a waiting client learns of it on time", async () => {
  const { registry, logins, checks, debugNodes, advance } = setup({ ttlMs: 60_000 });
  logins.open({ hostname: "a" });
  debugNodes.open({ hostname: "box" }, { id: DEBUG_ID });
  advance(30_000);
  checks.open({ src: 1, dst: 2 });
  advance(30_000);
  assert.deepEqual(registry.list().map((r) => r.kind), ["ssh-check"]);
  await assert.rejects(registry.register(DEBUG_ID, 1), /no pending login with auth id/);
  advance(30_000);
  assert.deepEqual(registry.list(), []);

  // A wait ends when its request expires, without anything else sweeping.
  const real = setup({ ttlMs: 30 });
  const check = real.checks.open({ src: 1, dst: 2 });
  const started = Date.now();
  const outcome = await real.checks.wait(check);
  assert.equal(outcome, "expired");
  assert.ok(Date.now() - started < 5_000);
});

Deno.test("auth requests: one bound; the oldest request goes first, whatever its kind", async () => {
  const { registry, logins, checks, debugNodes } = setup({ maxEntries: 2 });
  const oldest = logins.open({ hostname: "a" });
  const waiting = logins.wait(oldest, { timeoutMs: 60_000 });
  checks.open({ src: 1, dst: 2 });
  debugNodes.open({ hostname: "box" }, { id: DEBUG_ID });
  assert.equal(await waiting, "expired", "a client waiting on a pushed-out request is told");
  assert.deepEqual(registry.list().map((r) => r.kind), ["ssh-check", "debug-node"]);
});

Deno.test("auth requests: waits end with the verdict, a timeout, an abort or shutdown", async () => {
  const { registry, logins, checks } = setup();
  const login = logins.open({ hostname: "a" });
  const decided = logins.wait(login, { timeoutMs: 60_000 });
  await registry.register(login.id, 5);
  assert.deepEqual(await decided, { kind: "approved", node: { id: 5 } });
  // A verdict already given is answered at once.
  assert.deepEqual(await logins.wait(login), { kind: "approved", node: { id: 5 } });

  const other = logins.open({ hostname: "b" });
  assert.equal(await logins.wait(other, { timeoutMs: 10 }), "timeout");
  const abort = new AbortController();
  const aborted = logins.wait(other, { signal: abort.signal });
  abort.abort();
  assert.equal(await aborted, "aborted");

  const check = checks.open({ src: 1, dst: 2 });
  const closing = checks.wait(check);
  registry.close();
  assert.equal(await closing, "closed");
  assert.deepEqual(registry.list(), []);

  // A request removed by its kind (a verdict read) is gone for a later wait.
  const { checks: checks2 } = setup();
  const gone = checks2.open({ src: 1, dst: 2 });
  checks2.remove(gone);
  assert.equal(await checks2.wait(gone), "expired");
});
