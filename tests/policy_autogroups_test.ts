/**
 * Each autogroup on a small tailnet: who is a source, who is a destination, what the filter
 * and peers look like.
 */

import assert from "node:assert/strict";
import { parsePolicy, PolicyEngine, type PolicyNode, type PolicyUser } from "../lib/policy/mod.ts";
import { policyNode } from "./helpers/policy_nodes.ts";

const USERS: PolicyUser[] = [
  { id: 1, name: "alice", email: "alice@example.com", roles: ["owner", "admin"] },
  { id: 2, name: "bob", email: "bob@example.com", roles: ["admin"] },
  { id: 3, name: "carol", email: "carol@example.org" },
];

const node = policyNode;

const NODES: PolicyNode[] = [
  node(1, { userId: 1 }), // alice laptop
  node(2, { userId: 1 }), // alice phone
  node(3, { userId: 2 }), // bob
  node(4, { tags: ["tag:server"] }),
  node(5, {
    tags: ["tag:exit"],
    advertisedRoutes: ["0.0.0.0/0", "::/0"],
    approvedRoutes: ["0.0.0.0/0", "::/0"],
  }),
  node(6, { userId: 3 }), // carol
];

const BASE = {
  tagOwners: { "tag:server": ["alice@example.com"], "tag:exit": ["alice@example.com"] },
};

function engine(policy: Record<string, unknown>): PolicyEngine {
  return new PolicyEngine(parsePolicy(JSON.stringify({ ...BASE, ...policy })), USERS, NODES);
}

const peers = (e: PolicyEngine, id: number) => e.peersOf(id).toSortedArray();

Deno.test("autogroup:member: untagged devices only", () => {
  const e = engine({
    acls: [{ action: "accept", src: ["autogroup:member"], dst: ["tag:server:22"] }],
  });
  const f = e.filterFor(4);
  assert.equal(f.length, 1);
  assert.deepEqual(f[0].SrcIPs, [
    "100.64.0.1-100.64.0.3",
    "100.64.0.6",
    "fd7a:115c:a1e0::1-fd7a:115c:a1e0::3",
    "fd7a:115c:a1e0::6",
  ]);
  assert.deepEqual(f[0].DstPorts, [
    { IP: "100.64.0.4", Ports: { First: 22, Last: 22 } },
    { IP: "fd7a:115c:a1e0::4", Ports: { First: 22, Last: 22 } },
  ]);
  assert.deepEqual(e.filterFor(1), []);
  assert.deepEqual(peers(e, 4), [1, 2, 3, 6]);
  assert.deepEqual(peers(e, 1), [4]);
  assert.deepEqual(peers(e, 5), []);
});

Deno.test("autogroup:tagged: tagged devices only", () => {
  const e = engine({
    acls: [{ action: "accept", src: ["autogroup:tagged"], dst: ["alice@example.com:*"] }],
  });
  const f = e.filterFor(1);
  // Adjacent addresses collapse into the CIDR that covers exactly them.
  assert.deepEqual(f[0].SrcIPs, ["100.64.0.4/31", "fd7a:115c:a1e0::4/127"]);
  assert.deepEqual(e.filterFor(3), []);
  assert.deepEqual(peers(e, 4), [1, 2]);
});

Deno.test("autogroup:self: each owner reaches their own devices; tagged devices never", () => {
  const e = engine({
    acls: [{ action: "accept", src: ["autogroup:member"], dst: ["autogroup:self:*"] }],
  });
  const f1 = e.filterFor(1);
  assert.equal(f1.length, 1);
  assert.deepEqual(f1[0].SrcIPs, ["100.64.0.1-100.64.0.2", "fd7a:115c:a1e0::1-fd7a:115c:a1e0::2"]);
  assert.deepEqual(f1[0].DstPorts!.map((d) => d.IP), ["100.64.0.1", "fd7a:115c:a1e0::1"]);
  assert.deepEqual(e.filterFor(3)[0].SrcIPs, ["100.64.0.3", "fd7a:115c:a1e0::3"]);
  assert.deepEqual(e.filterFor(4), []);
  assert.deepEqual(peers(e, 1), [2]);
  assert.deepEqual(peers(e, 3), []);
  assert.deepEqual(peers(e, 4), []);
  // As an SSH destination too.
  const s = engine({
    ssh: [{
      action: "accept",
      src: ["autogroup:member"],
      dst: ["autogroup:self"],
      users: ["root"],
    }],
  });
  const rules = s.sshPolicyFor(2)!.rules;
  assert.equal(rules.length, 1);
  assert.deepEqual(rules[0].principals.map((p) => p.nodeIP).sort(), [
    "100.64.0.1",
    "100.64.0.2",
    "fd7a:115c:a1e0::1",
    "fd7a:115c:a1e0::2",
  ]);
  assert.deepEqual(s.sshPolicyFor(4), { rules: [] });
});

Deno.test("autogroup:internet: only exit nodes get the rule, as public ranges", () => {
  const e = engine({
    acls: [{ action: "accept", src: ["alice@example.com"], dst: ["autogroup:internet:*"] }],
  });
  const f = e.filterFor(5);
  assert.equal(f.length, 1);
  const ips = f[0].DstPorts!.map((d) => d.IP);
  assert.ok(ips.includes("0.0.0.0-9.255.255.255"));
  assert.ok(ips.includes("2000::/3"));
  assert.ok(!ips.some((ip) => ip.startsWith("10.") || ip.startsWith("100.64")));
  assert.deepEqual(e.filterFor(4), []);
  assert.deepEqual(peers(e, 1), [5]);
  assert.deepEqual(peers(e, 5), [1, 2]);
});

Deno.test("autogroup:danger-all: SrcIPs become *", () => {
  const e = engine({
    grants: [{ src: ["autogroup:danger-all"], dst: ["tag:server"], ip: ["443"] }],
  });
  assert.deepEqual(e.filterFor(4)[0].SrcIPs, ["*"]);
  assert.deepEqual(peers(e, 4), [1, 2, 3, 5, 6]);
  assert.throws(
    () => engine({ grants: [{ src: ["*"], dst: ["autogroup:danger-all"], ip: ["*"] }] }),
    /danger-all as a dst/,
  );
});

Deno.test("autogroup:nonroot: maps any non-root login to itself", () => {
  const e = engine({
    ssh: [{
      action: "accept",
      src: ["autogroup:member"],
      dst: ["tag:server"],
      users: ["autogroup:nonroot"],
    }],
  });
  const rule = e.sshPolicyFor(4)!.rules[0];
  assert.deepEqual(rule.sshUsers, { "*": "=", root: "" });
});

Deno.test("autogroup:admin and autogroup:owner follow user roles", () => {
  const e = engine({
    nodeAttrs: [
      { target: ["autogroup:admin"], attr: ["admin-attr"] },
      { target: ["autogroup:owner"], attr: ["owner-attr"] },
    ],
  });
  assert.deepEqual(e.capMapFor(1), { "admin-attr": null, "owner-attr": null });
  assert.deepEqual(e.capMapFor(3), { "admin-attr": null });
  assert.deepEqual(e.capMapFor(6), {});
  assert.deepEqual(e.capMapFor(4), {});
});

Deno.test("wildcard: sources are the tailnet ranges plus approved subnet routes", () => {
  const nodes = [
    ...NODES,
    node(7, {
      tags: ["tag:server"],
      advertisedRoutes: ["10.1.0.0/16"],
      approvedRoutes: ["10.1.0.0/16"],
    }),
  ];
  const e = new PolicyEngine(
    parsePolicy(
      JSON.stringify({ ...BASE, acls: [{ action: "accept", src: ["*"], dst: ["tag:server:80"] }] }),
    ),
    USERS,
    nodes,
  );
  assert.deepEqual(e.filterFor(4)[0].SrcIPs, [
    "10.1.0.0/16",
    "100.64.0.0-100.115.91.255",
    "100.115.94.0-100.127.255.255",
    "fd7a:115c:a1e0::/48",
  ]);
  // The router's filter carries the destinations its route serves.
  const router = e.filterFor(7);
  assert.deepEqual(router[0].DstPorts!.map((d) => d.IP), ["100.64.0.7", "fd7a:115c:a1e0::7"]);
});
