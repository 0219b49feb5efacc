/**
 * Policy parsing: HuJSON syntax, structure, and the errors that name the offending part.
 */

import assert from "node:assert/strict";
import { parseHuJSON, parsePolicy, PolicyEngine, PolicyError } from "../lib/policy/mod.ts";

function rejects(policy: unknown, message: string | RegExp): void {
  const text = typeof policy === "string" ? policy : JSON.stringify(policy);
  assert.throws(() => parsePolicy(text), (e: unknown) => {
    assert.ok(e instanceof PolicyError, `expected PolicyError, got ${e}`);
    if (typeof message === "string") {
      assert.ok(
        e.message.includes(message),
        `${JSON.stringify(e.message)} lacks ${JSON.stringify(message)}`,
      );
    } else assert.match(e.message, message);
    return true;
  });
}

const TAGS = { tagOwners: { "tag:server": ["alice@example.com"] } };

Deno.test("hujson: comments, trailing commas, escapes", () => {
  const v = parseHuJSON(`// leading comment
  {
    /* block */ "a": [1, 2, 3,],  // trailing comma in array
    "b": {"c": "x\\u0041\\n",},
  }`);
  assert.deepEqual(v, { a: [1, 2, 3], b: { c: "xA\n" } });
});

Deno.test("hujson: errors carry line and column", () => {
  assert.throws(() => parseHuJSON('{\n  "a": [1 2]\n}'), /line 2, column 11/);
  assert.throws(() => parseHuJSON('{"a": 1} x'), /unexpected text/);
  assert.throws(() => parseHuJSON('{"a": "unterminated}'), /unterminated string/);
  assert.throws(() => parseHuJSON('{"a": 1, "a": 2}'), /duplicate object key "a"/);
  assert.throws(() => parseHuJSON("/* never closed"), /unterminated block comment/);
});

Deno.test("parse: empty text is no policy; no acls and no grants allows all; acls [] denies all", () => {
  assert.equal(parsePolicy(""), null);
  assert.equal(parsePolicy("  \n"), null);
  const open = parsePolicy("{}")!;
  assert.equal(open.grants.length, 1);
  assert.equal(open.grants[0].src[0].kind, "wildcard");
  assert.equal(parsePolicy('{"acls": []}')!.grants.length, 0);
  assert.equal(parsePolicy('{"grants": []}')!.grants.length, 0);
});

Deno.test("parse: syntax errors are PolicyErrors naming the position", () => {
  rejects('{"acls": [}', /parsing HuJSON: .*line 1/);
  rejects("[]", "policy must be a JSON object");
  rejects('{"acls": {}}', "acls: expected a list");
});

Deno.test("parse: unknown fields are refused, '#' fields and key case are tolerated", () => {
  rejects({ aclz: [] }, 'unknown field "aclz"');
  rejects(
    { acls: [{ action: "accept", src: ["*"], dst: ["*:*"], bogus: 1 }] },
    'acls[0]: unknown field "bogus"',
  );
  const p = parsePolicy(
    JSON.stringify({ ACLs: [{ action: "accept", src: ["*"], dst: ["*:*"], "#note": "x" }] }),
  )!;
  assert.equal(p.grants.length, 1);
});

Deno.test("parse: ACL errors name the rule part", () => {
  rejects(
    { acls: [{ action: "deny", src: ["*"], dst: ["*:*"] }] },
    'action="deny" is not supported',
  );
  rejects(
    { ...TAGS, acls: [{ action: "accept", src: ["tag:nope"], dst: ["*:*"] }] },
    'src=tag not found: "tag:nope"',
  );
  rejects(
    { ...TAGS, acls: [{ action: "accept", src: ["*"], dst: ["tag:nope:22"] }] },
    'dst="tag:nope": tag not found: "tag:nope"',
  );
  rejects(
    { acls: [{ action: "accept", src: ["*"], dst: ["autogroup:self"] }] },
    'dst="autogroup:self": port range "self": invalid first integer',
  );
  rejects(
    { acls: [{ action: "accept", src: ["*"], dst: ["host"] }] },
    "hostport must contain a colon",
  );
  rejects(
    { acls: [{ action: "accept", src: ["group:x"], dst: ["*:*"] }] },
    'group not defined in policy: "group:x"',
  );
  rejects(
    { acls: [{ action: "accept", src: ["nohost"], dst: ["*:*"] }] },
    'host not defined in policy: "nohost"',
  );
  rejects(
    { acls: [{ action: "accept", src: ["%bogus%"], dst: ["*:*"] }] },
    '"%bogus%": invalid address',
  );
  rejects(
    { acls: [{ action: "accept", proto: "icmp", src: ["*"], dst: ["*:22"] }] },
    "protocol does not support specific ports",
  );
  rejects(
    { acls: [{ action: "accept", proto: "bogus", src: ["*"], dst: ["*:*"] }] },
    "invalid protocol number",
  );
});

Deno.test("parse: grant errors", () => {
  rejects({ grants: [{ src: ["*"], dst: ["*"] }] }, "ip and app can not both be empty");
  rejects(
    { grants: [{ src: ["*"], dst: ["*"], app: { "tailscale.com/cap/ingress": [{}] } }] },
    "capability name must not be in the tailscale.com domain",
  );
  rejects(
    { grants: [{ src: ["*"], dst: ["*"], app: { "https://example.com/cap": [{}] } }] },
    "capability name must have the form {domain}/{path}",
  );
  rejects(
    { grants: [{ src: ["*"], dst: ["*"], ip: ["*"], via: ["group:x"] }] },
    "via can only be a tag",
  );
  rejects(
    { grants: [{ src: ["*"], dst: ["*"], ip: ["*"], via: ["tag:nope"] }] },
    'tag "tag:nope" not found',
  );
  rejects(
    { grants: [{ src: ["*"], dst: ["0.0.0.0/0"], ip: ["*"] }] },
    'dst "0.0.0.0/0": to allow all IP addresses, use "*" or "autogroup:internet"',
  );
  rejects({
    grants: [{ src: ["*"], dst: ["autogroup:internet"], app: { "example.com/cap/x": [] } }],
  }, "cannot use app grants with autogroup:internet");
  rejects(
    { grants: [{ src: ["*"], dst: ["*"], ip: ["icmp"] }] },
    'port range "icmp": invalid first integer',
  );
  rejects({ grants: [{ src: ["*"], dst: ["*"], ip: ["tcp:22:33"] }] }, "expected only one colon");
  // Grants (unlike ACLs) refuse "*" as a source for autogroup:self.
  rejects(
    { grants: [{ src: ["*"], dst: ["autogroup:self"], ip: ["*"] }] },
    "autogroup:self can only be used with users, groups, or supported autogroups",
  );
  assert.ok(
    parsePolicy(
      JSON.stringify({ acls: [{ action: "accept", src: ["*"], dst: ["autogroup:self:*"] }] }),
    ),
  );
});

Deno.test("parse: groups, hosts and tagOwners", () => {
  rejects(
    { groups: { "group:a": ["group:b"], "group:b": ["x@y"] } },
    'groups["group:a"]: "group:b": group members cannot be recursive',
  );
  rejects({ groups: { admins: ["x@y"] } }, "group must start with 'group:'");
  rejects({ groups: { "group:a": "x@y" } }, "group value must be an array of users");
  rejects({ groups: { "group:a": ["nobody"] } }, "username must contain @");
  rejects({ hosts: { web: "not-an-ip" } }, 'hostname contains invalid IP address: hostname "web"');
  rejects(
    { tagOwners: { "tag:1st": ["a@b"] } },
    `tagOwners["tag:1st"]: tag names must start with a letter, after 'tag:'`,
  );
  rejects({ tagOwners: { "tag:a": ["group:nope"] } }, 'group not defined in policy: "group:nope"');
  // Tag owners may name tags, even in a cycle.
  assert.ok(parsePolicy(JSON.stringify({ tagOwners: { "tag:a": ["tag:b"], "tag:b": ["tag:a"] } })));
});

Deno.test("parse: SSH rule errors", () => {
  const rule = {
    action: "accept",
    src: ["autogroup:member"],
    dst: ["tag:server"],
    users: ["root"],
  };
  const ssh = (r: Record<string, unknown>) => ({ ...TAGS, ssh: [{ ...rule, ...r }] });
  rejects(ssh({ action: "deny" }), '"deny" is not a valid action');
  rejects(ssh({ action: "Accept" }), '"Accept" is not a valid action');
  rejects(ssh({ action: undefined }), "action must be specified");
  rejects(ssh({ users: [] }), "users must be specified");
  rejects(ssh({ users: null }), "users must be specified");
  rejects(ssh({ users: ["root", ""] }), 'user "" is not valid');
  rejects(ssh({ users: ["*"] }), 'user "*" is not valid');
  rejects(ssh({ dst: ["*"] }), "wildcard (*) is not supported as SSH destination");
  rejects({ ...ssh({ dst: ["srv"] }), hosts: { srv: "100.64.0.1" } }, 'invalid dst "srv"');
  rejects(ssh({ action: "check", checkPeriod: "abc" }), 'time: invalid duration "abc"');
  rejects(
    ssh({ action: "check", checkPeriod: "168h0m1s" }),
    "checkPeriod 168h0m1s is above the max (168h)",
  );
  rejects(ssh({ checkPeriod: "1h" }), 'checkPeriod is only valid with action "check"');
  rejects(ssh({ acceptEnv: [""] }), "acceptEnv values cannot be empty");
  rejects(
    ssh({ src: ["tag:server"], dst: ["alice@example.com"] }),
    "tags in SSH source cannot access user-owned devices",
  );
  rejects(
    ssh({ src: ["tag:server"], dst: ["autogroup:self"] }),
    "autogroup:self destination requires source to contain only users or groups",
  );
  assert.ok(parsePolicy(JSON.stringify(ssh({ action: " accept", checkPeriod: undefined }))));
  assert.ok(parsePolicy(JSON.stringify(ssh({ action: "check", checkPeriod: "always" }))));
  assert.equal(
    parsePolicy(JSON.stringify(ssh({ action: "check", checkPeriod: "168h" })))!.ssh[0]
      .checkPeriodNs,
    168 * 3600e9,
  );
});

Deno.test("parse: localpart domains are checked against the tailnet", () => {
  const policy = parsePolicy(JSON.stringify({
    ...TAGS,
    ssh: [{
      action: "accept",
      src: ["autogroup:member"],
      dst: ["tag:server"],
      users: ["localpart:*@example.org"],
    }],
  }));
  const users = [{ id: 1, name: "alice", email: "alice@example.com" }, {
    id: 2,
    name: "bob",
    email: "bob@example.org",
  }];
  assert.throws(
    () => new PolicyEngine(policy, users, [], { tailnetDomains: ["example.com"] }),
    /example.org is not associated with this Tailnet/,
  );
  // Without an explicit list, every user's domain belongs to the tailnet.
  assert.ok(new PolicyEngine(policy, users, []));
});

Deno.test("parse: nodeAttrs, autoApprovers and tests blocks", () => {
  rejects(
    { nodeAttrs: [{ target: ["autogroup:self"], attr: ["x"] }] },
    "nodeAttrs target does not support this autogroup",
  );
  rejects({ nodeAttrs: [{ target: ["tag:nope"], attr: ["x"] }] }, 'tag not found: "tag:nope"');
  rejects(
    { nodeAttrs: [{ target: ["*"], ipPool: ["10.0.0.0/8"] }] },
    "ipPool must be within 100.64.0.0/10",
  );
  rejects(
    { nodeAttrs: [{ target: ["*"], ipPool: ["100.100.100.0/24"] }] },
    "must not overlap reserved Tailscale ranges",
  );
  rejects(
    { autoApprovers: { routes: { "10.0.0.0/8": ["nobody"] } } },
    "invalid auto approver format",
  );
  rejects(
    { autoApprovers: { routes: { "not-a-prefix": ["a@b"] } } },
    'invalid prefix "not-a-prefix"',
  );
  rejects(
    { ...TAGS, sshTests: [{ src: "a@b", dst: ["autogroup:internet"], accept: ["root"] }] },
    'SSH tests dst contains disallowed element "autogroup:internet"',
  );
  rejects(
    { ...TAGS, sshTests: [{ src: "a@b", dst: ["tag:server:22"], accept: ["root"] }] },
    'SSH tests dst contains unknown tag "tag:server:22"',
  );
  rejects(
    { ...TAGS, sshTests: [{ src: "a@b", dst: ["100.64.0.0/24"], accept: ["root"] }] },
    'SSH tests dst contains disallowed element "100.64.0.0/24"',
  );
});

Deno.test("parse: posture conditions are refused rather than ignored; users is the old src", () => {
  rejects(
    { acls: [{ action: "accept", src: ["*"], dst: ["*:*"], srcPosture: ["posture:x"] }] },
    "acls[0].srcPosture",
  );
  rejects(
    { grants: [{ src: ["*"], dst: ["*"], ip: ["*"], srcPosture: ["posture:x"] }] },
    "grants[0].srcPosture",
  );
  const p = parsePolicy(
    JSON.stringify({ acls: [{ action: "accept", users: ["alice@example.com"], dst: ["*:22"] }] }),
  )!;
  assert.deepEqual(p.grants[0].src, [{ kind: "user", token: "alice@example.com" }]);
});
