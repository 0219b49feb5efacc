/**
 * Fuzzing the policy front end and engine: random and mutated policies must never crash or
 * hang; every refusal must be a PolicyError; every accepted policy must compile and produce
 * outputs for every node.
 */

import assert from "node:assert/strict";
import fc from "fast-check";
import {
  parsePolicy,
  PolicyEngine,
  PolicyError,
  type PolicyNode,
  type PolicyUser,
  runPolicyTests,
  runSSHTests,
} from "../lib/policy/mod.ts";

const USERS: PolicyUser[] = [
  { id: 1, name: "alice", email: "alice@example.com" },
  { id: 2, name: "bob", email: "bob@example.org" },
];
const NODES: PolicyNode[] = [
  {
    id: 1,
    name: "a",
    ipv4: "100.64.0.1",
    ipv6: "fd7a:115c:a1e0::1",
    userId: 1,
    tags: [],
    advertisedRoutes: [],
    approvedRoutes: [],
  },
  {
    id: 2,
    name: "b",
    ipv4: "100.64.0.2",
    userId: 2,
    tags: [],
    advertisedRoutes: ["10.0.0.0/24"],
    approvedRoutes: ["10.0.0.0/24"],
  },
  {
    id: 3,
    name: "c",
    ipv4: "100.64.0.3",
    tags: ["tag:web"],
    advertisedRoutes: ["0.0.0.0/0", "::/0"],
    approvedRoutes: ["0.0.0.0/0", "::/0"],
  },
  {
    id: 4,
    name: "d",
    ipv4: "not-an-ip",
    tags: ["tag:db", "tag:web"],
    advertisedRoutes: ["bogus"],
    approvedRoutes: [],
  },
];

const SEED_POLICY = {
  groups: { "group:eng": ["alice@example.com", "bob@"] },
  hosts: { lan: "10.0.0.0/8", one: "100.64.0.2" },
  tagOwners: { "tag:web": ["group:eng"], "tag:db": ["alice@example.com"] },
  acls: [
    { action: "accept", src: ["group:eng", "lan"], dst: ["tag:web:80,443", "one:22"] },
    { action: "accept", src: ["group:eng"], dst: ["autogroup:self:*", "tag:db:5432"] },
    { action: "accept", proto: "udp", src: ["*"], dst: ["autogroup:internet:*"] },
  ],
  grants: [
    {
      src: ["tag:web"],
      dst: ["tag:db"],
      ip: ["tcp:5432"],
      app: { "example.com/cap/x": [{ a: 1 }] },
    },
    { src: ["autogroup:member"], dst: ["10.0.0.0/24"], ip: ["*"], via: ["tag:web"] },
  ],
  ssh: [{
    action: "check",
    src: ["autogroup:member"],
    dst: ["autogroup:self", "tag:web"],
    users: ["root", "autogroup:nonroot", "localpart:*@example.com"],
    checkPeriod: "1h",
  }],
  nodeAttrs: [{ target: ["tag:web"], attr: ["funnel"] }],
  autoApprovers: { routes: { "10.0.0.0/8": ["tag:web"] }, exitNode: ["group:eng"] },
  tests: [{ src: "alice@example.com", accept: ["tag:web:80"], deny: ["100.64.0.3:8080"] }],
  sshTests: [{ src: "alice@example.com", dst: ["tag:web"], check: ["root"] }],
};

/** Parses, compiles and evaluates; anything thrown must be a PolicyError. */
function exercise(text: string): void {
  try {
    const policy = parsePolicy(text);
    const engine = new PolicyEngine(policy, USERS, NODES);
    for (const n of NODES) {
      engine.filterFor(n.id);
      engine.sshPolicyFor(n.id);
      engine.peersOf(n.id).size;
      engine.capMapFor(n.id);
      engine.autoApprove(n.id, "10.0.0.0/24");
    }
    if (policy) {
      runPolicyTests(policy, engine);
      runSSHTests(policy, engine);
    }
    engine.upsertNode({ ...NODES[0], tags: ["tag:db"] });
    engine.removeNode(2);
  } catch (e) {
    if (!(e instanceof PolicyError)) {
      throw new Error(
        `non-PolicyError for ${JSON.stringify(text).slice(0, 400)}: ${(e as Error).stack}`,
      );
    }
    assert.ok(e.message.length > 0);
  }
}

/** A JSON path into the seed policy, to replace with something random. */
function paths(v: unknown, prefix: (string | number)[] = []): (string | number)[][] {
  const out: (string | number)[][] = [prefix];
  if (Array.isArray(v)) v.forEach((x, i) => out.push(...paths(x, [...prefix, i])));
  else if (v && typeof v === "object") {
    for (const [k, x] of Object.entries(v)) out.push(...paths(x, [...prefix, k]));
  }
  return out;
}

function replaceAt(root: unknown, path: (string | number)[], value: unknown): unknown {
  if (path.length === 0) return value;
  if (Array.isArray(root)) {
    const copy = [...root];
    copy[path[0] as number] = replaceAt(copy[path[0] as number], path.slice(1), value);
    return copy;
  }
  const copy: Record<string, unknown> = { ...(root as Record<string, unknown>) };
  copy[path[0]] = replaceAt(copy[path[0]], path.slice(1), value);
  return copy;
}

const SEED_PATHS = paths(SEED_POLICY);
const LEAF_PATHS = SEED_PATHS.filter((p) => {
  let v: unknown = SEED_POLICY;
  for (const k of p) v = (v as Record<string | number, unknown>)[k];
  return typeof v !== "object" || v === null;
});

const ALIAS_PIECES = [
  "*",
  "tag:web",
  "tag:",
  "tag:1x",
  "group:eng",
  "group:none",
  "autogroup:self",
  "autogroup:member",
  "autogroup:internet",
  "autogroup:danger-all",
  "autogroup:bogus",
  "alice@",
  "user:*@example.com",
  "lan",
  "100.64.0.1",
  "10.0.0.0/33",
  "::/0",
  "[fd7a::1]:22",
  "fd7a:115c:a1e0::1/128:*",
  ":",
  "::",
  "a:b:c",
  "localpart:*@*",
  "-1",
  "65536",
  "1-0",
  "22,",
  "always",
  "168h0m1s",
  "1.5h",
  "icmp:22",
  "tcp:*",
  "999",
  "",
  " ",
];

/** Pieces that are valid somewhere, so that mutants are often accepted and reach the engine. */
const VALID_PIECES = [
  "*",
  "*:*",
  "tag:web",
  "tag:db",
  "tag:web:22",
  "group:eng",
  "group:eng:443",
  "alice@example.com",
  "autogroup:member",
  "autogroup:tagged",
  "autogroup:self:*",
  "autogroup:internet:*",
  "lan",
  "lan:*",
  "10.0.0.0/8",
  "10.0.0.0/8:80-90",
  "tcp:22",
  "udp:*",
  "icmp:*",
  "root",
  "ubuntu",
  "accept",
  "check",
];

const randomLeaf = fc.oneof(
  { arbitrary: fc.constantFrom(...VALID_PIECES), weight: 6 },
  { arbitrary: fc.array(fc.constantFrom(...VALID_PIECES), { maxLength: 3 }), weight: 3 },
  fc.constantFrom(...ALIAS_PIECES),
  fc.tuple(fc.constantFrom(...ALIAS_PIECES), fc.constantFrom(...ALIAS_PIECES)).map(([a, b]) =>
    `${a}:${b}`
  ),
  fc.string({ maxLength: 12 }),
  fc.jsonValue({ maxDepth: 2 }),
);

Deno.test("policy fuzz: the seed policy is valid and its tests pass", () => {
  const policy = parsePolicy(JSON.stringify(SEED_POLICY))!;
  const engine = new PolicyEngine(policy, USERS, NODES);
  assert.deepEqual(runPolicyTests(policy, engine), []);
  assert.deepEqual(runSSHTests(policy, engine), []);
});

Deno.test("policy fuzz: structural mutations of a valid policy", () => {
  fc.assert(
    fc.property(
      fc.array(
        fc.oneof(
          { arbitrary: fc.tuple(fc.constantFrom(...LEAF_PATHS), randomLeaf), weight: 4 },
          { arbitrary: fc.tuple(fc.constantFrom(...SEED_PATHS), randomLeaf), weight: 1 },
        ),
        { minLength: 1, maxLength: 3 },
      ),
      (edits) => {
        let p: unknown = SEED_POLICY;
        for (const [path, v] of edits) p = replaceAt(p, path, v);
        exercise(JSON.stringify(p));
      },
    ),
    { numRuns: Number(Deno.env.get("POLICY_RUNS") ?? 2000) },
  );
});

Deno.test("policy fuzz: byte-level mutations of HuJSON text", () => {
  const text = `// policy\n${JSON.stringify(SEED_POLICY, null, 2).replace(/\]\n/g, "],\n")}`;
  fc.assert(
    fc.property(
      fc.array(
        fc.tuple(fc.nat({ max: text.length }), fc.nat({ max: 3 }), fc.string({ maxLength: 3 })),
        {
          minLength: 1,
          maxLength: 5,
        },
      ),
      (edits) => {
        let t = text;
        for (const [at, del, ins] of edits) t = t.slice(0, at) + ins + t.slice(at + del);
        exercise(t);
      },
    ),
    { numRuns: Number(Deno.env.get("POLICY_RUNS") ?? 2000) },
  );
});

Deno.test("policy fuzz: arbitrary JSON and arbitrary text", () => {
  fc.assert(fc.property(fc.jsonValue({ maxDepth: 4 }), (v) => exercise(JSON.stringify(v))), {
    numRuns: 300,
  });
  fc.assert(fc.property(fc.string({ maxLength: 200 }), (s) => exercise(s)), { numRuns: 300 });
});

Deno.test("policy fuzz: pathological inputs are refused quickly", () => {
  const deep = "[".repeat(100_000) + "]".repeat(100_000);
  assert.throws(() => parsePolicy(deep), PolicyError);
  const longComment = `{/*${"*".repeat(200_000)}`;
  assert.throws(() => parsePolicy(longComment), PolicyError);
  const manyRules = JSON.stringify({
    acls: Array.from(
      { length: 5000 },
      (_, i) => ({ action: "accept", src: ["*"], dst: [`*:${1 + i}`] }),
    ),
  });
  const engine = new PolicyEngine(parsePolicy(manyRules), USERS, NODES);
  const filter = engine.filterFor(1);
  assert.equal(filter.length, 1);
  assert.equal(filter[0].DstPorts!.length, 5000);
});
