/**
 * Policy refusals placed on the line (and column) of the offending key or value, from the real
 * parser's and engine's messages.
 */
import assert from "node:assert/strict";
import { parseHuJSON, parsePolicy, PolicyEngine, PolicyError } from "../lib/policy/mod.ts";
import { checkPolicy } from "../lib/policy/check.ts";
import { lineColumn, locatePolicyErrors } from "../lib/policy/locate.ts";

function refusal(text: string, check: () => unknown = () => parsePolicy(text)): string {
  try {
    check();
  } catch (e) {
    assert.ok(e instanceof PolicyError, `expected a PolicyError, got ${e}`);
    return e.message;
  }
  throw new Error("the policy was accepted");
}

/** The 1-based line of the first line of `text` containing `needle`. */
function lineOf(text: string, needle: string): number {
  const i = text.split("\n").findIndex((l) => l.includes(needle));
  assert.ok(i >= 0, `${needle} not in the text`);
  return i + 1;
}

const users = [{ id: 1, name: "alice", email: "alice@example.com" }];
const nodes = [{
  id: 1,
  name: "laptop",
  ipv4: "100.64.0.1",
  userId: 1,
  tags: [],
  advertisedRoutes: [],
  approvedRoutes: [],
}];

Deno.test("a HuJSON syntax error keeps its line and column", () => {
  const text = '{\n  "acls": [\n    {"action": "accept" "src": ["*"]}\n  ]\n}\n';
  const [p] = locatePolicyErrors(text, refusal(text));
  assert.equal(p.line, 3);
  assert.equal(p.column, 25);
  assert.match(p.message, /expected ',' or '}'/);
});

Deno.test("an undefined group is placed on the value that names it, not a comment", () => {
  const text = `{
  // group:eng is used below
  "groups": {"group:ops": ["alice@"]},
  "acls": [
    {"action": "accept", "src": ["group:ops"], "dst": ["*:*"]},
    {"action": "accept", "src": ["group:eng"], "dst": ["*:22"]},
  ],
}`;
  const [p] = locatePolicyErrors(text, refusal(text));
  assert.equal(p.line, lineOf(text, '"src": ["group:eng"]'));
  assert.equal(p.column, text.split("\n")[p.line! - 1].indexOf('"group:eng"') + 1);
});

Deno.test("an unknown tag inside a destination is placed on that destination", () => {
  const text = `{
  "tagOwners": {"tag:web": ["alice@"]},
  "acls": [
    {"action": "accept", "src": ["*"],
     "dst": ["tag:web:80", "tag:db:5432"]},
  ],
}`;
  const [p] = locatePolicyErrors(text, refusal(text));
  assert.match(p.message, /tag:db/);
  assert.equal(p.line, lineOf(text, "tag:db:5432"));
});

Deno.test("an unknown field is placed on its key, within the rule the message names", () => {
  const text = `{
  "acls": [
    {"action": "accept", "src": ["*"], "dst": ["*:*"]},
    {"action": "accept", "src": ["*"], "dst": ["*:*"],
      "port": "22"},
  ],
}`;
  const message = refusal(text);
  assert.match(message, /acls\[1\]/);
  const [p] = locatePolicyErrors(text, message);
  assert.equal(p.line, 5);
  assert.equal(p.column, 7);
});

Deno.test("a bad tag owner is placed under its tag", () => {
  const text = `{
  "tagOwners": {
    "tag:a": ["alice@"],
    "tag:b": [
      "alice@",
      "nonsense"
    ],
  },
}`;
  const [p] = locatePolicyErrors(text, refusal(text));
  assert.equal(p.line, lineOf(text, '"nonsense"'));
});

Deno.test("each failed policy test is placed on its entry", () => {
  const text = `{
  "acls": [{"action": "accept", "src": ["alice@"], "dst": ["alice@:22"]}],
  "tests": [
    {"src": "alice@", "accept": ["100.64.0.1:22"]},
    {"src": "alice@", "accept": ["100.64.0.1:80"]},
    {"src": "alice@",
     "deny": ["100.64.0.1:22"]},
  ],
}`;
  const message = refusal(text, () => checkPolicy(text, users, nodes));
  const problems = locatePolicyErrors(text, message);
  assert.equal(problems.length, 2);
  assert.equal(problems[0].line, lineOf(text, "100.64.0.1:80"));
  assert.equal(problems[1].line, lineOf(text, '"deny"') - 1);
  assert.match(problems[0].message, /test\(s\) failed: test 1/);
});

Deno.test("a domain the tailnet does not have is placed on the alias that names it", () => {
  const text = `{
  "ssh": [{"action": "accept", "src": ["autogroup:member"], "dst": ["autogroup:self"],
    "users": [
      "localpart:*@example.org"]}],
}`;
  const policy = parsePolicy(text);
  const message = refusal(text, () => new PolicyEngine(policy, users, nodes));
  const [p] = locatePolicyErrors(text, message);
  assert.equal(p.line, 4);
});

Deno.test("a message naming nothing in the text has no position", () => {
  const text = '{"acls": []}';
  const [p] = locatePolicyErrors(text, "something went wrong");
  assert.equal(p.line, undefined);
  assert.equal(p.message, "something went wrong");
});

Deno.test("the HuJSON visitor reports paths and offsets of every value", () => {
  const text = '{"a": [1, {"b": "x"}]}';
  const seen: string[] = [];
  parseHuJSON(text, (path, _v, at) => seen.push(`${path.join(".")}@${at.start}:${at.keyAt}`));
  assert.deepEqual(seen, [
    "a.0@7:undefined",
    "a.1.b@16:11",
    "a.1@10:undefined",
    "a@6:1",
    "@0:undefined",
  ]);
  assert.deepEqual(lineColumn("ab\ncd", 4), { line: 2, column: 2 });
});
