/**
 * Engine behaviour on small tailnets: rule merging, subnet routers and exit nodes, via grants,
 * app capability grants, node attributes, route auto-approval, SSH actions, and the policy's
 * own tests.
 */

import assert from "node:assert/strict";
import {
  parsePolicy,
  PolicyEngine,
  type PolicyNode,
  type PolicyUser,
  runPolicyTests,
  runSSHTests,
} from "../lib/policy/mod.ts";
import { policyNode } from "./helpers/policy_nodes.ts";

const USERS: PolicyUser[] = [
  { id: 1, name: "alice", email: "alice@example.com" },
  { id: 2, name: "bob", email: "bob@example.com" },
];

const node = policyNode;

const OWNERS = {
  tagOwners: {
    "tag:web": ["alice@example.com"],
    "tag:db": ["alice@example.com"],
    "tag:router": ["alice@example.com"],
    "tag:exit": ["alice@example.com"],
  },
};

function engine(policy: Record<string, unknown>, nodes: PolicyNode[]): PolicyEngine {
  return new PolicyEngine(parsePolicy(JSON.stringify({ ...OWNERS, ...policy })), USERS, nodes);
}

Deno.test("no policy allows everything", () => {
  const e = new PolicyEngine(null, USERS, [node(1, { userId: 1 }), node(2, { userId: 2 })]);
  const f = e.filterFor(1);
  assert.deepEqual(f[0].DstPorts, [{ IP: "*", Ports: { First: 0, Last: 65535 } }]);
  assert.deepEqual(e.peersOf(1).toSortedArray(), [2]);
  assert.equal(e.sshPolicyFor(1), null);
});

Deno.test("rules with the same sources and protocols merge at the first one's position", () => {
  const nodes = [
    node(1, { userId: 1 }),
    node(2, { tags: ["tag:web"] }),
    node(3, { tags: ["tag:db"] }),
  ];
  const e = engine({
    acls: [
      { action: "accept", src: ["alice@example.com"], dst: ["tag:db:5432"] },
      { action: "accept", src: ["tag:web"], dst: ["tag:db:5432"] },
      { action: "accept", src: ["alice@example.com"], dst: ["tag:db:22", "tag:web:80"] },
    ],
  }, nodes);
  const db = e.filterFor(3);
  assert.equal(db.length, 2);
  assert.deepEqual(db[0].SrcIPs, ["100.64.0.1", "fd7a:115c:a1e0::1"]);
  assert.deepEqual(db[0].DstPorts!.map((d) => `${d.IP}:${d.Ports.First}`), [
    "100.64.0.3:5432",
    "fd7a:115c:a1e0::3:5432",
    "100.64.0.3:22",
    "fd7a:115c:a1e0::3:22",
  ]);
  assert.deepEqual(db[1].SrcIPs, ["100.64.0.2", "fd7a:115c:a1e0::2"]);
  // tag:web only sees its part of the merged rule; the rule keeps the first position.
  const web = e.filterFor(2);
  assert.equal(web.length, 1);
  assert.deepEqual(web[0].DstPorts!.map((d) => d.Ports.First), [80, 80]);
  // Different protocols do not merge.
  const e2 = engine({
    acls: [
      { action: "accept", proto: "tcp", src: ["alice@example.com"], dst: ["tag:db:1"] },
      { action: "accept", proto: "udp", src: ["alice@example.com"], dst: ["tag:db:2"] },
    ],
  }, nodes);
  assert.deepEqual(e2.filterFor(3).map((r) => r.IPProto), [[6], [17]]);
});

Deno.test("subnet routes: only approved and advertised routes serve; routers count as sources", () => {
  const nodes = [
    node(1, { userId: 1 }),
    node(2, {
      tags: ["tag:router"],
      advertisedRoutes: ["10.1.0.0/16"],
      approvedRoutes: ["10.1.0.0/16"],
    }),
    node(3, { tags: ["tag:router"], advertisedRoutes: ["10.2.0.0/16"], approvedRoutes: [] }),
    node(4, { tags: ["tag:web"] }),
  ];
  const e = engine({
    acls: [
      { action: "accept", src: ["alice@example.com"], dst: ["10.0.0.0/8:443"] },
      { action: "accept", src: ["10.1.0.0/16"], dst: ["tag:web:80"] },
    ],
  }, nodes);
  assert.deepEqual(e.filterFor(2)[0].DstPorts, [{
    IP: "10.0.0.0/8",
    Ports: { First: 443, Last: 443 },
  }]);
  assert.deepEqual(e.filterFor(3), []);
  assert.deepEqual(e.peersOf(1).toSortedArray(), [2]);
  // The router whose route overlaps a source prefix sees the destination.
  assert.deepEqual(e.peersOf(4).toSortedArray(), [2]);
  assert.deepEqual(e.filterFor(4)[0].SrcIPs, ["10.1.0.0/16"]);
});

Deno.test("exit nodes: internet rules and peer visibility need an approved exit route", () => {
  const nodes = [
    node(1, { userId: 1 }),
    node(2, {
      tags: ["tag:exit"],
      advertisedRoutes: ["0.0.0.0/0", "::/0"],
      approvedRoutes: ["0.0.0.0/0", "::/0"],
    }),
    node(3, { tags: ["tag:exit"], advertisedRoutes: ["0.0.0.0/0", "::/0"] }),
  ];
  const e = engine({
    acls: [{ action: "accept", src: ["alice@example.com"], dst: ["autogroup:internet:*"] }],
  }, nodes);
  assert.deepEqual(e.peersOf(1).toSortedArray(), [2]);
  assert.ok(e.filterFor(2).length === 1);
  assert.deepEqual(e.filterFor(3), []);
});

Deno.test("via grants reach only routers with the via tag that route the destination", () => {
  const nodes = [
    node(1, { userId: 1 }),
    node(2, {
      tags: ["tag:router"],
      advertisedRoutes: ["10.1.0.0/16"],
      approvedRoutes: ["10.1.0.0/16"],
    }),
    node(3, {
      tags: ["tag:web"],
      advertisedRoutes: ["10.1.0.0/16"],
      approvedRoutes: ["10.1.0.0/16"],
    }),
  ];
  const e = engine({
    grants: [{
      src: ["alice@example.com"],
      dst: ["10.1.0.0/16"],
      ip: ["tcp:22"],
      via: ["tag:router"],
    }],
  }, nodes);
  assert.deepEqual(e.filterFor(2), [{
    SrcIPs: ["100.64.0.1", "fd7a:115c:a1e0::1"],
    DstPorts: [{ IP: "10.1.0.0/16", Ports: { First: 22, Last: 22 } }],
    IPProto: [6],
  }]);
  assert.deepEqual(e.filterFor(3), []);
  assert.deepEqual(e.peersOf(1).toSortedArray(), [2]);
});

Deno.test("app grants: CapGrant narrowed to the node; drive also grants drive-sharer back", () => {
  const nodes = [node(1, { userId: 1 }), node(2, { tags: ["tag:web"] })];
  const e = engine({
    grants: [{
      src: ["alice@example.com"],
      dst: ["tag:web"],
      app: { "tailscale.com/cap/drive": [{ shares: ["*"] }] },
    }],
  }, nodes);
  assert.deepEqual(e.filterFor(2), [{
    SrcIPs: ["100.64.0.1", "fd7a:115c:a1e0::1"],
    CapGrant: [{
      Dsts: ["100.64.0.2/32", "fd7a:115c:a1e0::2/128"],
      CapMap: { "tailscale.com/cap/drive": [{ shares: ["*"] }] },
    }],
  }]);
  assert.deepEqual(e.filterFor(1), [{
    SrcIPs: ["100.64.0.2", "fd7a:115c:a1e0::2"],
    CapGrant: [{
      Dsts: ["100.64.0.1/32", "fd7a:115c:a1e0::1/128"],
      CapMap: { "tailscale.com/cap/drive-sharer": null },
    }],
  }]);
  assert.deepEqual(e.peersOf(1).toSortedArray(), [2]);
});

Deno.test("node attributes: targets, funnel companions, randomizeClientPort", () => {
  const nodes = [node(1, { userId: 1 }), node(2, { tags: ["tag:web"] })];
  const e = engine({
    randomizeClientPort: true,
    nodeAttrs: [{ target: ["tag:web"], attr: ["funnel"] }, {
      target: ["alice@example.com"],
      attr: ["nextdns:abc"],
    }],
  }, nodes);
  assert.deepEqual(e.capMapFor(2), {
    "randomize-client-port": null,
    funnel: null,
    "https://tailscale.com/cap/funnel-ports?ports=443,8443,10000": null,
    "https://tailscale.com/cap/warn-funnel-no-https": null,
  });
  assert.deepEqual(e.capMapFor(1), { "randomize-client-port": null, "nextdns:abc": null });
});

Deno.test("auto-approval: routes map covers subnets, only exitNode approves exit routes", () => {
  const e = engine({
    autoApprovers: {
      routes: { "10.0.0.0/8": ["tag:router"], "0.0.0.0/0": ["tag:router"] },
      exitNode: ["tag:exit"],
    },
  }, []);
  const router = node(5, { tags: ["tag:router"] });
  assert.equal(e.autoApprove(router, "10.1.0.0/16"), true);
  assert.equal(e.autoApprove(router, "10.0.0.0/8"), true);
  // A /0 entry in the routes map approves every subnet route, but never an exit route.
  assert.equal(e.autoApprove(router, "11.0.0.0/8"), true);
  assert.equal(e.autoApprove(router, "0.0.0.0/0"), false);
  const narrow = engine({ autoApprovers: { routes: { "10.0.0.0/8": ["tag:router"] } } }, []);
  assert.equal(narrow.autoApprove(router, "11.0.0.0/8"), false);
  assert.equal(narrow.autoApprove(router, "10.0.0.0/7"), false);
  assert.equal(e.autoApprove(node(6, { tags: ["tag:exit"] }), "::/0"), true);
  assert.equal(e.autoApprove(node(7, { userId: 1 }), "10.1.0.0/16"), false);
  assert.equal(e.autoApprove(router, "garbage"), false);
});

Deno.test("ssh: check actions delegate to the server; check rules come first", () => {
  const nodes = [node(1, { userId: 1 }), node(2, { tags: ["tag:web"] })];
  const policy = parsePolicy(JSON.stringify({
    ...OWNERS,
    ssh: [
      { action: "accept", src: ["alice@example.com"], dst: ["tag:web"], users: ["root"] },
      {
        action: "check",
        src: ["alice@example.com"],
        dst: ["tag:web"],
        users: ["ubuntu"],
        acceptEnv: ["LANG"],
      },
    ],
  }));
  const e = new PolicyEngine(policy, USERS, nodes, { serverURL: "https://hs.example" });
  const rules = e.sshPolicyFor(2)!.rules;
  assert.equal(rules.length, 2);
  assert.equal(
    rules[0].action.holdAndDelegate,
    "https://hs.example/machine/ssh/action/$SRC_NODE_ID/to/$DST_NODE_ID?local_user=$LOCAL_USER",
  );
  assert.deepEqual(rules[0].sshUsers, { root: "", ubuntu: "ubuntu" });
  assert.deepEqual(rules[0].acceptEnv, ["LANG"]);
  assert.equal(rules[1].action.accept, true);
  assert.deepEqual(e.sshPolicyFor(1), { rules: [] });
});

Deno.test("policy tests: accept/deny reachability, protocols and shapes", () => {
  const nodes = [node(1, { userId: 1 }), node(2, { tags: ["tag:web"] }), node(3, { userId: 2 })];
  const base = {
    ...OWNERS,
    hosts: { web: "100.64.0.2" },
    acls: [{ action: "accept", proto: "tcp", src: ["alice@example.com"], dst: ["tag:web:80,443"] }],
  };
  const run = (tests: unknown[]) => {
    const p = parsePolicy(JSON.stringify({ ...base, tests }))!;
    return runPolicyTests(p, new PolicyEngine(p, USERS, nodes));
  };
  assert.deepEqual(
    run([{ src: "alice@example.com", accept: ["tag:web:80", "web:443"], deny: ["tag:web:22"] }]),
    [],
  );
  assert.deepEqual(run([{ src: "alice@example.com", proto: "tcp", accept: ["web:80"] }]), []);
  assert.equal(run([{ src: "alice@example.com", proto: "udp", accept: ["web:80"] }]).length, 1);
  assert.equal(run([{ src: "bob@example.com", accept: ["web:80"] }]).length, 1);
  assert.equal(run([{ src: "alice@example.com", deny: ["web:80"] }]).length, 1);
  assert.match(run([{ src: "alice@example.com", accept: ["web:80-90"] }])[0], /single port/);
  assert.match(
    run([{ src: "alice@example.com", accept: ["10.0.0.0/8:80"] }])[0],
    /not a CIDR range/,
  );
  assert.match(
    run([{ src: "nobody@example.com", accept: ["web:80"] }])[0],
    /resolved to no IP addresses/,
  );
  assert.match(run([{ src: "alice@example.com" }])[0], /at least one of "accept" or "deny"/);
  assert.match(
    run([{ src: "alice@example.com", proto: "icmp", accept: ["web:80"] }])[0],
    /tcp, udp, sctp/,
  );
});

Deno.test("ssh tests: accept, deny and check per login user", () => {
  const nodes = [node(1, { userId: 1 }), node(2, { tags: ["tag:web"] })];
  const run = (ssh: unknown[], sshTests: unknown[]) => {
    const p = parsePolicy(JSON.stringify({ ...OWNERS, ssh, sshTests }))!;
    return runSSHTests(p, new PolicyEngine(p, USERS, nodes));
  };
  const accept = [{
    action: "accept",
    src: ["alice@example.com"],
    dst: ["tag:web"],
    users: ["autogroup:nonroot"],
  }];
  assert.deepEqual(
    run(accept, [{
      src: "alice@example.com",
      dst: ["tag:web"],
      accept: ["ubuntu"],
      deny: ["root"],
    }]),
    [],
  );
  assert.equal(
    run(accept, [{ src: "alice@example.com", dst: ["tag:web"], accept: ["root"] }]).length,
    1,
  );
  assert.equal(
    run(accept, [{ src: "alice@example.com", dst: ["tag:web"], check: ["ubuntu"] }]).length,
    1,
  );
  const check = [{
    action: "check",
    src: ["alice@example.com"],
    dst: ["tag:web"],
    users: ["root"],
  }];
  assert.deepEqual(
    run(check, [{ src: "alice@example.com", dst: ["tag:web"], check: ["root"], accept: ["root"] }]),
    [],
  );
  assert.equal(run(check, [{ src: "alice@example.com", dst: ["tag:web"] }]).length, 1);
  assert.equal(
    run(check, [{ src: "alice@example.com", dst: ["tag:db"], accept: ["root"] }]).length,
    1,
  );
});

Deno.test("removing and re-adding nodes keeps ids and slots straight", () => {
  const e = engine({ acls: [{ action: "accept", src: ["*"], dst: ["*:*"] }] }, [
    node(1, { userId: 1 }),
    node(2, { userId: 2 }),
  ]);
  assert.deepEqual(e.removeNode(1), [2]);
  assert.deepEqual(e.removeNode(1), []);
  assert.deepEqual(e.upsertNode(node(3, { userId: 1 })), [2, 3]);
  assert.deepEqual(e.peersOf(3).toSortedArray(), [2]);
  assert.throws(() => e.filterFor(1), RangeError);
});
