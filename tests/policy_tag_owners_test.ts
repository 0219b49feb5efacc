/**
 * PolicyEngine.userMayOwnTag: the tagOwners question a registration with
 * `tailscale up --advertise-tags` asks (headscale's NodeCanHaveTag for the registering user).
 */

import assert from "node:assert/strict";
import { parsePolicy, PolicyEngine, type PolicyUser } from "../lib/policy/mod.ts";

const ALICE: PolicyUser = { id: 1, name: "alice", email: "alice@example.com" };
const BOB: PolicyUser = { id: 2, name: "bob", email: "bob@example.com" };
const CAROL: PolicyUser = { id: 3, name: "carol", roles: ["admin"] };

function engine(policy: Record<string, unknown> | null, users = [ALICE, BOB, CAROL]) {
  return new PolicyEngine(policy ? parsePolicy(JSON.stringify(policy)) : null, users, []);
}

Deno.test("tag owners: users by name or email, groups, and only tags in tagOwners", () => {
  const e = engine({
    groups: { "group:ops": ["bob@"] },
    tagOwners: {
      "tag:server": ["alice@"],
      "tag:web": ["alice@example.com"],
      "tag:db": ["group:ops"],
      "tag:nobody": [],
    },
  });
  assert.equal(e.userMayOwnTag(ALICE, "tag:server"), true);
  assert.equal(e.userMayOwnTag(ALICE, "tag:web"), true);
  assert.equal(e.userMayOwnTag(ALICE, "tag:db"), false);
  assert.equal(e.userMayOwnTag(BOB, "tag:db"), true);
  assert.equal(e.userMayOwnTag(BOB, "tag:server"), false);
  assert.equal(e.userMayOwnTag(ALICE, "tag:nobody"), false);
  assert.equal(e.userMayOwnTag(ALICE, "tag:unknown"), false);
});

Deno.test("tag owners: no policy (allow-all) gives no tag to anyone", () => {
  const e = engine(null);
  assert.equal(e.userMayOwnTag(ALICE, "tag:server"), false);
  assert.equal(e.userMayOwnTag(CAROL, "tag:server"), false);
});

Deno.test("tag owners: a tag owned by a tag stands for that tag's owners; cycles add nothing", () => {
  const e = engine({
    tagOwners: {
      "tag:base": ["alice@"],
      "tag:child": ["tag:base"],
      "tag:a": ["tag:b", "bob@"],
      "tag:b": ["tag:a"],
    },
  });
  assert.equal(e.userMayOwnTag(ALICE, "tag:child"), true);
  assert.equal(e.userMayOwnTag(BOB, "tag:child"), false);
  assert.equal(e.userMayOwnTag(BOB, "tag:a"), true);
  assert.equal(e.userMayOwnTag(BOB, "tag:b"), true);
  assert.equal(e.userMayOwnTag(ALICE, "tag:b"), false);
});

Deno.test("tag owners: autogroup:member is every user; role autogroups are users with the role", () => {
  const e = engine({
    tagOwners: { "tag:any": ["autogroup:member"], "tag:admin": ["autogroup:admin"] },
  });
  assert.equal(e.userMayOwnTag(BOB, "tag:any"), true);
  assert.equal(e.userMayOwnTag(CAROL, "tag:admin"), true);
  assert.equal(e.userMayOwnTag(ALICE, "tag:admin"), false);
});

Deno.test("tag owners: follow policy and user changes", () => {
  const e = engine({ tagOwners: { "tag:server": ["alice@"] } });
  assert.equal(e.userMayOwnTag(ALICE, "tag:server"), true);
  e.setPolicy(parsePolicy(JSON.stringify({ tagOwners: { "tag:server": ["bob@"] } })));
  assert.equal(e.userMayOwnTag(ALICE, "tag:server"), false);
  assert.equal(e.userMayOwnTag(BOB, "tag:server"), true);
  // bob renamed: "bob@" now names nobody.
  e.setUsers([ALICE, { ...BOB, name: "robert", email: "robert@example.com" }]);
  assert.equal(e.userMayOwnTag(BOB, "tag:server"), false);
});

Deno.test("tag owners: a user created after the engine saw the user list matches by name or email", () => {
  const e = engine({
    groups: { "group:new": ["dave@"] },
    tagOwners: {
      "tag:byname": ["dave@"],
      "tag:byemail": ["erin@corp.example"],
      "tag:group": ["group:new"],
      "tag:alice": ["alice@"],
    },
  });
  const dave: PolicyUser = { id: 10, name: "dave" };
  const erin: PolicyUser = { id: 11, name: "erin", email: "erin@corp.example" };
  assert.equal(e.userMayOwnTag(dave, "tag:byname"), true);
  assert.equal(e.userMayOwnTag(dave, "tag:group"), true);
  assert.equal(e.userMayOwnTag(erin, "tag:byemail"), true);
  assert.equal(e.userMayOwnTag(erin, "tag:byname"), false);
  // A second "alice" (higher id) does not take the name from the first.
  assert.equal(e.userMayOwnTag({ id: 12, name: "alice" }, "tag:alice"), false);
  // An email match beats an existing user's name match.
  const e2 = engine({ tagOwners: { "tag:x": ["bob@"] } });
  assert.equal(e2.userMayOwnTag({ id: 13, name: "zed", email: "bob" }, "tag:x"), true);
});
