/**
 * diffAccess: who gains and who loses access between two policies over the same tailnet, from
 * the filters and SSH policies the engine really produces.
 */
import assert from "node:assert/strict";
import { parsePolicy, PolicyEngine, type PolicyNode } from "../lib/policy/mod.ts";
import { diffAccess } from "../lib/policy/access_diff.ts";

const users = [{ id: 1, name: "alice" }, { id: 2, name: "bob" }];
const node = (id: number, name: string, extra: Partial<PolicyNode>): PolicyNode => ({
  id,
  name,
  ipv4: `100.64.0.${id}`,
  ipv6: `fd7a:115c:a1e0::${id}`,
  tags: [],
  advertisedRoutes: [],
  approvedRoutes: [],
  ...extra,
});
const nodes = [
  node(1, "alice-laptop", { userId: 1 }),
  node(2, "bob-phone", { userId: 2 }),
  node(3, "db-1", { tags: ["tag:db"] }),
  node(4, "router", {
    tags: ["tag:router"],
    advertisedRoutes: ["10.0.0.0/24"],
    approvedRoutes: ["10.0.0.0/24"],
  }),
];
const owners = `"tagOwners": {"tag:db": ["alice@"], "tag:router": ["alice@"]}`;

function engine(text: string): PolicyEngine {
  return new PolicyEngine(parsePolicy(text), users, nodes);
}

Deno.test("gains and losses per source and destination, with routes and SSH", () => {
  const before = engine(`{${owners}, "acls": [
    {"action": "accept", "proto": "tcp", "src": ["alice@"], "dst": ["tag:db:22"]},
    {"action": "accept", "proto": "tcp", "src": ["bob@"], "dst": ["tag:db:22,443"]},
  ]}`);
  const after = engine(`{${owners}, "acls": [
    {"action": "accept", "proto": "tcp", "src": ["alice@"], "dst": ["tag:db:22,5432-5433"]},
    {"action": "accept", "proto": "tcp", "src": ["bob@"], "dst": ["tag:db:443"]},
    {"action": "accept", "proto": "tcp", "src": ["alice@"], "dst": ["10.0.0.0/24:80"]},
  ], "ssh": [
    {"action": "check", "src": ["alice@"], "dst": ["tag:db"], "users": ["root"]},
  ]}`);
  const diff = diffAccess(before, after, nodes);
  const sorted = diff.changes.slice().sort((a, b) => a.dst - b.dst || a.src - b.src);
  assert.deepEqual(sorted, [
    { src: 1, dst: 3, via: undefined, gained: ["tcp:5432-5433"], lost: [] },
    { src: 2, dst: 3, via: undefined, gained: [], lost: ["tcp:22"] },
    { src: 1, dst: 4, via: "10.0.0.0/24", gained: ["tcp:80"], lost: [] },
  ]);
  assert.equal(diff.filtersChanged, 2);
  assert.deepEqual(diff.ssh, [{ src: 1, dst: 3, gained: ["root (check)"], lost: [] }]);
  assert.equal(diff.sshChanged, 1);
});

Deno.test("the same policy, reformatted, changes nothing", () => {
  const text = `{${owners}, "acls": [{"action": "accept", "src": ["*"], "dst": ["*:*"]}]}`;
  const diff = diffAccess(engine(text), engine(text.replace(/ /g, "\n  ")), nodes);
  assert.deepEqual(diff, {
    changes: [],
    ssh: [],
    filtersChanged: 0,
    sshChanged: 0,
    truncated: false,
  });
});

Deno.test("going from allow-all to deny-all loses every protocol on every peer", () => {
  const before = new PolicyEngine(null, users, nodes);
  const after = engine(`{${owners}, "acls": []}`);
  const diff = diffAccess(before, after, nodes);
  // Four nodes, each loses the other three.
  assert.equal(diff.changes.length, 12);
  for (const c of diff.changes) {
    assert.deepEqual(c.gained, []);
    assert.deepEqual(c.lost, ["icmp", "tcp:*", "udp:*"]);
  }
});

Deno.test("a large change stops expanding at the budget, the counts stay whole", () => {
  const before = new PolicyEngine(null, users, nodes);
  const after = engine(`{${owners}, "acls": []}`);
  const few = diffAccess(before, after, nodes, { maxChanges: 4 });
  assert.equal(few.truncated, true);
  assert.ok(few.changes.length >= 4 && few.changes.length < 12, `${few.changes.length}`);
  assert.equal(few.filtersChanged, 4);
  const cheap = diffAccess(before, after, nodes, { maxChecks: 1 });
  assert.equal(cheap.truncated, true);
  assert.equal(cheap.changes.length, 3, "one destination expanded, then the budget is spent");
});
