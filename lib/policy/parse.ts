/**
 * Policy text → validated Policy model. Everything that can be checked without knowing the
 * tailnet is checked here; the first problem found is thrown as a PolicyError whose message
 * names the offending part (wording follows the hosted service where known).
 */

import { parsePrefix, type Prefix } from "../net/ip.ts";
import { HuJSONError, type JSONValue, parseHuJSON } from "./hujson.ts";
import { prefixRange } from "./ipset.ts";
import {
  aliasText,
  formatGoDuration,
  parseAlias,
  parseDestination,
  parseGoDuration,
  parsePorts,
  parseProtocol,
  PORT_PROTOCOLS,
  validateTagName,
} from "./syntax.ts";
import {
  type Alias,
  ALL_PORTS,
  type AutoApproverSpec,
  type Grant,
  type NodeAttrSpec,
  type Policy,
  PolicyError,
  type PolicyTestSpec,
  type ProtoPorts,
  type SSHRuleSpec,
  type SSHTestSpec,
} from "./types.ts";

type Obj = { [k: string]: JSONValue };

const MAX_CHECK_PERIOD_NS = 168 * 3600e9;

/** Capabilities under tailscale.com that a policy may grant. */
const ALLOWED_TAILSCALE_CAPS = new Set([
  "tailscale.com/cap/drive",
  "tailscale.com/cap/relay",
  "tailscale.com/cap/webui",
  "tailscale.com/cap/kubernetes",
  "tailscale.com/cap/tsidp",
  "tailscale.com/cap/secrets",
]);

/** Top-level keys the hosted service accepts but that do not affect this engine. */
const IGNORED_TOP_LEVEL = ["derpMap", "disableIPv4", "OneCGNATRoute"];

function fail(message: string): never {
  throw new PolicyError(message);
}

function isObj(v: JSONValue | undefined): v is Obj {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** Reads an object's known fields case-insensitively; unknown fields are errors ("#…" skipped). */
function fields(obj: Obj, known: string[], where: string): Map<string, JSONValue> {
  const out = new Map<string, JSONValue>();
  const lower = new Map(known.map((k) => [k.toLowerCase(), k]));
  for (const [k, v] of Object.entries(obj)) {
    if (k.startsWith("#")) continue;
    const canon = lower.get(k.toLowerCase());
    if (!canon) fail(`${where}unknown field ${JSON.stringify(k)}`);
    if (out.has(canon)) fail(`${where}duplicate field ${JSON.stringify(k)}`);
    out.set(canon, v);
  }
  return out;
}

function stringList(v: JSONValue | undefined, what: string): string[] {
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v)) fail(`${what}: expected a list of strings`);
  return v.map((x) => {
    if (typeof x !== "string") fail(`${what}: expected a string, got ${JSON.stringify(x)}`);
    return x;
  });
}

function optString(v: JSONValue | undefined, what: string): string | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v !== "string") fail(`${what}: expected a string`);
  return v;
}

function objectEntries(v: JSONValue | undefined, what: string): [string, JSONValue][] {
  if (v === undefined || v === null) return [];
  if (!isObj(v)) fail(`${what}: expected an object`);
  return Object.entries(v).filter(([k]) => !k.startsWith("#"));
}

/** Device posture is not implemented; ignoring a posture condition would widen access. */
function rejectPosture(f: Map<string, JSONValue>, where: string): void {
  const p = f.get("srcPosture");
  if (p !== undefined && p !== null && !(Array.isArray(p) && p.length === 0)) {
    fail(`${where}.srcPosture: device posture conditions are not supported`);
  }
}

function listOfObjects(v: JSONValue | undefined, what: string): Obj[] {
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v)) fail(`${what}: expected a list`);
  return v.map((x, i) => {
    if (!isObj(x)) fail(`${what}[${i}]: expected an object`);
    return x;
  });
}

/** Parses and validates policy text (HuJSON). Empty text means "no policy" and returns null. */
export function parsePolicy(text: string): Policy | null {
  if (text.trim() === "") return null;
  let root: JSONValue;
  try {
    root = parseHuJSON(text);
  } catch (e) {
    if (e instanceof HuJSONError) fail(`parsing HuJSON: ${e.message}`);
    throw e;
  }
  if (!isObj(root)) fail("policy must be a JSON object");
  return buildPolicy(root);
}

interface Ctx {
  groups: Map<string, string[]>;
  hosts: Policy["hosts"];
  tagOwners: Map<string, string[]>;
}

function buildPolicy(root: Obj): Policy {
  const f = fields(root, [
    "groups",
    "hosts",
    "tagOwners",
    "acls",
    "grants",
    "ssh",
    "nodeAttrs",
    "autoApprovers",
    "tests",
    "sshTests",
    "randomizeClientPort",
    ...IGNORED_TOP_LEVEL,
  ], "");

  const groups = parseGroups(f.get("groups"));
  const hosts = parseHosts(f.get("hosts"));
  const tagOwners = parseTagOwners(f.get("tagOwners"), groups);
  const ctx: Ctx = { groups, hosts, tagOwners };

  const localpartDomains: string[] = [];
  const userDomains: string[] = [];
  const noteAlias = (a: Alias) => {
    if (a.kind === "userDomain") userDomains.push(a.domain);
  };

  const grants: Grant[] = [];
  const hasAcls = f.has("acls") && f.get("acls") !== null;
  const hasGrants = f.has("grants") && f.get("grants") !== null;
  for (const [i, g] of listOfObjects(f.get("grants"), "grants").entries()) {
    const grant = parseGrant(g, i, ctx);
    grant.src.forEach(noteAlias);
    grant.dst.forEach(noteAlias);
    grants.push(grant);
  }
  for (const [i, a] of listOfObjects(f.get("acls"), "acls").entries()) {
    for (const grant of parseACL(a, i, ctx)) {
      grant.src.forEach(noteAlias);
      grant.dst.forEach(noteAlias);
      grants.push(grant);
    }
  }
  // No acls and no grants at all: everything may talk to everything.
  if (!hasAcls && !hasGrants) {
    grants.push({
      src: [{ kind: "wildcard" }],
      dst: [{ kind: "wildcard" }],
      ip: [{ ports: [ALL_PORTS] }],
      via: [],
    });
  }

  const ssh = listOfObjects(f.get("ssh"), "ssh").map((r, i) => {
    const rule = parseSSHRule(r, i, ctx);
    rule.src.forEach(noteAlias);
    for (const u of rule.users) {
      const d = localpartDomain(u);
      if (d !== null) localpartDomains.push(d);
    }
    return rule;
  });

  const nodeAttrs = listOfObjects(f.get("nodeAttrs"), "nodeAttrs").map((n, i) =>
    parseNodeAttr(n, i, ctx)
  );
  const autoApprovers = parseAutoApprovers(f.get("autoApprovers"), ctx);
  const tests = listOfObjects(f.get("tests"), "tests").map(parseTest);
  const sshTests = listOfObjects(f.get("sshTests"), "sshTests").map((t, i) =>
    parseSSHTest(t, i, ctx)
  );

  const rcp = f.get("randomizeClientPort");
  if (rcp !== undefined && rcp !== null && typeof rcp !== "boolean") {
    fail("randomizeClientPort: expected true or false");
  }

  return {
    groups,
    hosts,
    tagOwners,
    grants,
    ssh,
    nodeAttrs,
    autoApprovers,
    tests,
    sshTests,
    randomizeClientPort: rcp === true,
    localpartDomains,
    userDomains,
  };
}

// ---------------------------------------------------------------------------------------------
// groups, hosts, tagOwners

function parseGroups(v: JSONValue | undefined): Map<string, string[]> {
  const entries = objectEntries(v, "groups");
  const raw = new Map<string, string[]>();
  for (const [name, members] of entries) {
    if (!name.startsWith("group:")) {
      fail(`group must start with 'group:', got: ${JSON.stringify(name)}`);
    }
    if (!Array.isArray(members)) {
      fail(`group value must be an array of users: group ${JSON.stringify(name)}`);
    }
    raw.set(name, stringList(members, `groups[${JSON.stringify(name)}]`));
  }
  // The service names the last group (in reverse order) that contains another group.
  for (const name of [...raw.keys()].sort().reverse()) {
    for (const m of raw.get(name)!) {
      if (m.trim().startsWith("group:")) {
        fail(
          `groups[${JSON.stringify(name)}]: ${
            JSON.stringify(m)
          }: group members cannot be recursive`,
        );
      }
    }
  }
  const out = new Map<string, string[]>();
  for (const [name, members] of raw) {
    out.set(
      name,
      members.map((m) => {
        const t = m.trim();
        if (!t.includes("@")) {
          fail(
            `groups[${JSON.stringify(name)}]: username must contain @, got: ${JSON.stringify(m)}`,
          );
        }
        return t;
      }),
    );
  }
  return out;
}

function parseHosts(v: JSONValue | undefined): Policy["hosts"] {
  const out: Policy["hosts"] = new Map();
  for (const [name, value] of objectEntries(v, "hosts")) {
    if (name.includes("@") || name.includes(":") || !/^[A-Za-z0-9_][A-Za-z0-9._-]*$/.test(name)) {
      fail(`invalid hostname: ${JSON.stringify(name)}`);
    }
    if (typeof value !== "string") {
      fail(`hosts[${JSON.stringify(name)}]: expected an address string`);
    }
    const p = /^[0-9a-fA-F:.]+(\/\d+)?$/.test(value.trim()) ? parsePrefix(value.trim()) : null;
    if (!p) {
      fail(
        `hostname contains invalid IP address: hostname ${JSON.stringify(name)} address ${
          JSON.stringify(value)
        }`,
      );
    }
    out.set(name, { prefix: p, range: prefixRange(p) });
  }
  return out;
}

function parseTagOwners(
  v: JSONValue | undefined,
  groups: Map<string, string[]>,
): Map<string, string[]> {
  const out = new Map<string, string[]>();
  const entries = objectEntries(v, "tagOwners");
  for (const [tag] of entries) {
    if (!tag.startsWith("tag:")) fail(`tag must start with 'tag:', got: ${JSON.stringify(tag)}`);
    if (!/^[A-Za-z]/.test(tag.slice(4))) {
      fail(`tagOwners[${JSON.stringify(tag)}]: tag names must start with a letter, after 'tag:'`);
    }
  }
  const tags = new Set(entries.map(([t]) => t));
  for (const [tag, owners] of entries) {
    const list = stringList(owners, `tagOwners[${JSON.stringify(tag)}]`).map((o) => o.trim());
    for (const o of list) {
      if (o.startsWith("group:")) {
        if (!groups.has(o)) fail(`group not defined in policy: ${JSON.stringify(o)}`);
      } else if (o.startsWith("tag:")) {
        if (!tags.has(o)) fail(`tag not found: ${JSON.stringify(o)}`);
      } else if (o.startsWith("autogroup:")) {
        if (!["admin", "owner", "member", "it-admin", "network-admin"].includes(o.slice(10))) {
          fail(`tagOwners[${JSON.stringify(tag)}]: invalid owner ${JSON.stringify(o)}`);
        }
      } else if (!o.includes("@")) {
        fail(`tagOwners[${JSON.stringify(tag)}]: invalid owner format: ${JSON.stringify(o)}`);
      }
    }
    out.set(tag, list);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Aliases in context.

type Side = "src" | "dst";

/** Checks that groups, tags and hosts an alias names are defined. */
function checkDefined(a: Alias, ctx: Ctx, side: Side, text: string): void {
  switch (a.kind) {
    case "group":
      if (!ctx.groups.has(a.name)) fail(`group not defined in policy: ${JSON.stringify(a.name)}`);
      return;
    case "tag":
      if (!ctx.tagOwners.has(a.name)) {
        if (side === "src") fail(`src=tag not found: ${JSON.stringify(a.name)}`);
        fail(`dst=${JSON.stringify(text)}: tag not found: ${JSON.stringify(a.name)}`);
      }
      return;
    case "host":
      if (!ctx.hosts.has(a.name)) fail(`host not defined in policy: ${JSON.stringify(a.name)}`);
      return;
  }
}

function checkAutogroup(a: Alias, side: Side): void {
  if (a.kind !== "autogroup") return;
  if (side === "src") {
    if (a.name === "self") fail('"autogroup:self" not valid on the src side of a rule');
    if (a.name === "internet") fail("autogroup:internet can only be used in ACL destinations");
    if (!["member", "tagged", "danger-all", "admin", "owner", "shared"].includes(a.name)) {
      fail(`autogroup not supported for ACL sources: "autogroup:${a.name}"`);
    }
  } else {
    if (a.name === "danger-all") fail("cannot use autogroup:danger-all as a dst");
    if (!["member", "tagged", "self", "internet", "admin", "owner"].includes(a.name)) {
      fail(`autogroup not supported for ACL destinations: "autogroup:${a.name}"`);
    }
  }
}

function parseAliases(v: JSONValue | undefined, what: string): Alias[] {
  return stringList(v, what).map((s) => parseAlias(s));
}

/** autogroup:self needs user-shaped sources only (ACLs also allow "*"). */
function checkSelfSources(src: Alias[], dst: Alias[], allowWildcard: boolean): void {
  if (!dst.some((d) => d.kind === "autogroup" && d.name === "self")) return;
  for (const s of src) {
    const ok = s.kind === "user" || s.kind === "group" || s.kind === "userDomain" ||
      (s.kind === "autogroup" && s.name === "member") || (allowWildcard && s.kind === "wildcard");
    if (!ok) fail("autogroup:self can only be used with users, groups, or supported autogroups");
  }
}

// ---------------------------------------------------------------------------------------------
// acls and grants

function parseACL(a: Obj, i: number, ctx: Ctx): Grant[] {
  const f = fields(a, ["action", "src", "dst", "proto", "users", "srcPosture"], `acls[${i}]: `);
  const action = f.get("action");
  if (action !== "accept") {
    fail(`action=${JSON.stringify(typeof action === "string" ? action : "")} is not supported`);
  }
  let protocols: number[] | undefined;
  const proto = optString(f.get("proto"), `acls[${i}].proto`);
  if (proto !== undefined && proto !== "") protocols = [parseProtocol(proto)];

  rejectPosture(f, `acls[${i}]`);
  // "users" is the old spelling of "src".
  const src = parseAliases(f.get("src") ?? f.get("users"), `acls[${i}].src`);
  for (const s of src) {
    checkAutogroup(s, "src");
    checkDefined(s, ctx, "src", aliasText(s));
  }
  const dsts = stringList(f.get("dst"), `acls[${i}].dst`).map((d) => ({
    text: d,
    ...parseDestination(d),
  }));
  for (const d of dsts) {
    checkAutogroup(d.alias, "dst");
    checkDefined(d.alias, ctx, "dst", aliasText(d.alias));
    if (protocols && !PORT_PROTOCOLS.has(protocols[0])) {
      if (d.ports.some((p) => p.first !== 0 || p.last !== 65535)) {
        fail(
          `protocol does not support specific ports: ${JSON.stringify(proto)}, only "*" is allowed`,
        );
      }
    }
  }
  checkSelfSources(src, dsts.map((d) => d.alias), true);

  // One grant per destination. When the ACL names anything besides autogroups, the service
  // emits the autogroup:self destinations after all the others.
  const isSelf = (d: { alias: Alias }) => d.alias.kind === "autogroup" && d.alias.name === "self";
  const onlyAutogroups = dsts.every((d) => d.alias.kind === "autogroup");
  const ordered = onlyAutogroups
    ? dsts
    : [...dsts.filter((d) => !isSelf(d)), ...dsts.filter(isSelf)];
  return ordered.map((d) => ({
    src,
    dst: [d.alias],
    ip: [{ protocols, ports: d.ports }],
    via: [],
  }));
}

function parseIPSpec(text: string): ProtoPorts {
  if (text === "*") return { ports: [ALL_PORTS] };
  const colon = text.indexOf(":");
  if (colon < 0) {
    try {
      return { ports: parsePorts(text) };
    } catch (e) {
      fail(`port range ${JSON.stringify(text)}: ${(e as Error).message}`);
    }
  }
  const parts = text.split(":");
  if (parts.length !== 2) {
    fail(
      `expected only one colon in Internet protocol and port type, got: ${JSON.stringify(text)}`,
    );
  }
  const protocol = parseProtocol(parts[0]);
  let ports;
  try {
    ports = parsePorts(parts[1]);
  } catch (e) {
    fail(`port range ${JSON.stringify(parts[1])}: ${(e as Error).message}`);
  }
  if (!PORT_PROTOCOLS.has(protocol) && ports.some((p) => p.first !== 0 || p.last !== 65535)) {
    fail(
      `protocol does not support specific ports: ${JSON.stringify(parts[0])}, only "*" is allowed`,
    );
  }
  return { protocols: [protocol], ports };
}

function parseGrant(g: Obj, i: number, ctx: Ctx): Grant {
  const f = fields(g, ["src", "dst", "ip", "app", "via", "srcPosture"], `grants[${i}]: `);
  rejectPosture(f, `grants[${i}]`);
  const src = parseAliases(f.get("src"), `grants[${i}].src`);
  const dst = parseAliases(f.get("dst"), `grants[${i}].dst`);
  const ip = stringList(f.get("ip"), `grants[${i}].ip`).map((s) => parseIPSpec(s.trim()));

  let app: Record<string, unknown[]> | undefined;
  const rawApp = f.get("app");
  if (rawApp !== undefined && rawApp !== null) {
    if (!isObj(rawApp)) fail(`grants[${i}].app: expected an object`);
    app = {};
    for (const [cap, val] of Object.entries(rawApp)) {
      if (cap.includes("://") || !/^[^/]+\.[^/]+\/.+/.test(cap)) {
        fail("capability name must have the form {domain}/{path}");
      }
      if (cap.startsWith("tailscale.com/") && !ALLOWED_TAILSCALE_CAPS.has(cap)) {
        fail("capability name must not be in the tailscale.com domain");
      }
      if (!Array.isArray(val)) fail(`grants[${i}].app[${JSON.stringify(cap)}]: expected a list`);
      app[cap] = val;
    }
  }
  if (ip.length === 0 && (!app || Object.keys(app).length === 0)) {
    fail("ip and app can not both be empty");
  }

  const rawVia = f.get("via");
  const via: string[] = [];
  if (rawVia !== undefined && rawVia !== null) {
    if (!Array.isArray(rawVia)) fail("via can only be a tag");
    for (const v of rawVia) {
      if (typeof v !== "string" || !v.trim().startsWith("tag:")) fail("via can only be a tag");
      const t = v.trim();
      validateTagName(t);
      if (!ctx.tagOwners.has(t)) fail(`tag ${JSON.stringify(t)} not found`);
      via.push(t);
    }
  }

  for (const s of src) {
    checkAutogroup(s, "src");
    checkDefined(s, ctx, "src", aliasText(s));
  }
  for (const d of dst) {
    checkAutogroup(d, "dst");
    if (d.kind === "tag" && !ctx.tagOwners.has(d.name)) {
      fail(`tag not found: ${JSON.stringify(d.name)}`);
    }
    checkDefined(d, ctx, "dst", aliasText(d));
    if (app && d.kind === "autogroup" && d.name === "internet") {
      fail("cannot use app grants with autogroup:internet");
    }
    if (
      d.kind === "prefix" && d.range.lo === 0n &&
      (d.range.hi === (1n << 32n) - 1n && d.range.family === 4 ||
        d.range.family === 6 && d.range.hi === (1n << 128n) - 1n)
    ) {
      fail(
        `dst ${
          JSON.stringify(d.range.family === 4 ? "0.0.0.0/0" : "::/0")
        }: to allow all IP addresses, use "*" or "autogroup:internet"`,
      );
    }
  }
  checkSelfSources(src, dst, false);
  return { src, dst, ip, app, via };
}

// ---------------------------------------------------------------------------------------------
// ssh

/** The domain of a canonical "localpart:*@domain" entry, else null (then it is a literal user). */
export function localpartDomain(user: string): string | null {
  if (!user.startsWith("localpart:")) return null;
  const pattern = user.slice(10);
  const at = pattern.lastIndexOf("@");
  if (at < 0) return null;
  if (pattern.slice(0, at) !== "*") return null;
  const domain = pattern.slice(at + 1);
  return domain === "" ? null : domain;
}

function parseSSHRule(r: Obj, i: number, ctx: Ctx): SSHRuleSpec {
  const f = fields(
    r,
    ["action", "src", "dst", "users", "checkPeriod", "acceptEnv", "srcPosture"],
    `ssh[${i}]: `,
  );
  rejectPosture(f, `ssh[${i}]`);
  const rawAction = f.get("action");
  if (rawAction !== undefined && rawAction !== null && typeof rawAction !== "string") {
    fail(`ssh[${i}].action: expected a string`);
  }
  const actionText = (rawAction ?? "").trim();
  if (actionText === "") fail("action must be specified");
  if (actionText !== "accept" && actionText !== "check") {
    fail(`${JSON.stringify(actionText)} is not a valid action`);
  }
  const action = actionText as "accept" | "check";

  const usersRaw = f.get("users");
  const users = stringList(usersRaw, `ssh[${i}].users`).map((u) => u.trim());
  if (users.length === 0) fail("users must be specified");
  for (const u of users) {
    if (u === "" || u === "*") fail(`user ${JSON.stringify(u)} is not valid`);
  }

  const src = parseAliases(f.get("src"), `ssh[${i}].src`);
  const dst: Alias[] = [];
  for (const text of stringList(f.get("dst"), `ssh[${i}].dst`)) {
    const d = parseAlias(text);
    if (d.kind === "wildcard") {
      fail(
        "wildcard (*) is not supported as SSH destination; use 'autogroup:member' for user-owned devices, 'autogroup:tagged' for tagged devices, or specific tags/users",
      );
    }
    if (d.kind === "host" || d.kind === "prefix") {
      fail(`invalid dst ${JSON.stringify(text.trim())}`);
    }
    dst.push(d);
  }
  for (const s of src) {
    if (s.kind === "wildcard" || s.kind === "host" || s.kind === "prefix") {
      fail(`ssh[${i}]: alias not supported for SSH source: ${JSON.stringify(aliasText(s))}`);
    }
    if (s.kind === "autogroup" && !["member", "tagged", "admin", "owner"].includes(s.name)) {
      fail(`autogroup not supported for SSH sources: "autogroup:${s.name}"`);
    }
    checkDefined(s, ctx, "src", aliasText(s));
  }
  for (const d of dst) {
    if (d.kind === "autogroup" && !["member", "tagged", "self"].includes(d.name)) {
      fail(`autogroup not supported for SSH destinations: "autogroup:${d.name}"`);
    }
    if (d.kind === "tag" && !ctx.tagOwners.has(d.name)) {
      fail(`tag not found: ${JSON.stringify(d.name)}`);
    }
    checkDefined(d, ctx, "dst", aliasText(d));
  }
  checkSSHCombination(src, dst);

  let checkPeriodNs: number | undefined;
  const cp = f.get("checkPeriod");
  if (cp !== undefined && cp !== null) {
    if (typeof cp !== "string") fail(`ssh[${i}].checkPeriod: expected a duration string`);
    if (action !== "check") fail('checkPeriod is only valid with action "check"');
    if (cp === "always") {
      checkPeriodNs = 0;
    } else {
      const ns = parseGoDuration(cp);
      if (ns < 0) fail(`checkPeriod ${formatGoDuration(ns)} must be a positive duration`);
      if (ns > MAX_CHECK_PERIOD_NS) {
        fail(`checkPeriod ${formatGoDuration(ns)} is above the max (168h)`);
      }
      checkPeriodNs = ns;
    }
  }

  let acceptEnv: string[] | undefined;
  const ae = f.get("acceptEnv");
  if (ae !== undefined && ae !== null) {
    acceptEnv = stringList(ae, `ssh[${i}].acceptEnv`);
    if (acceptEnv.some((e) => e === "")) fail("acceptEnv values cannot be empty");
  }
  return { action, src, dst, users, checkPeriodNs, acceptEnv };
}

/** Tailscale SSH's rules on who may reach whose devices. */
function checkSSHCombination(src: Alias[], dst: Alias[]): void {
  const srcTagged = src.some((s) =>
    s.kind === "tag" || (s.kind === "autogroup" && s.name === "tagged")
  );
  const srcGroups = src.some((s) =>
    s.kind === "group" || s.kind === "userDomain" || (s.kind === "autogroup" && s.name === "member")
  );
  const srcUsers = new Set(
    src.filter((s) => s.kind === "user").map((s) => (s as { token: string }).token),
  );
  for (const d of dst) {
    if (d.kind === "user") {
      if (srcTagged) {
        fail(
          `tags in SSH source cannot access user-owned devices (${d.token}); use autogroup:tagged or specific tags as destinations instead`,
        );
      }
      if (srcGroups || srcUsers.size !== 1 || !srcUsers.has(d.token)) {
        fail(
          `user destination requires source to contain only that same user ${
            JSON.stringify(d.token)
          }; use autogroup:self instead for same-user SSH access`,
        );
      }
    } else if (d.kind === "autogroup" && srcTagged) {
      if (d.name === "self") {
        fail(
          "autogroup:self destination requires source to contain only users or groups, not tags or autogroup:tagged",
        );
      }
      if (d.name === "member") {
        fail("tags in SSH source cannot access autogroup:member (user-owned devices)");
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// nodeAttrs, autoApprovers, tests

const CGNAT = parsePrefix("100.64.0.0/10")!;
const RESERVED_POOLS = ["100.100.100.0/24", "100.115.92.0/23"].map((p) =>
  prefixRange(parsePrefix(p)!)
);

function parseNodeAttr(n: Obj, i: number, ctx: Ctx): NodeAttrSpec {
  const f = fields(n, ["target", "attr", "ipPool", "app"], `nodeAttrs[${i}]: `);
  const target = parseAliases(f.get("target"), `nodeAttrs[${i}].target`);
  for (const t of target) {
    if (t.kind === "autogroup" && !["member", "tagged", "admin", "owner"].includes(t.name)) {
      fail(`nodeAttrs target does not support this autogroup: "autogroup:${t.name}"`);
    }
    if (t.kind === "tag" && !ctx.tagOwners.has(t.name)) {
      fail(`tag not found: ${JSON.stringify(t.name)}`);
    }
    checkDefined(t, ctx, "src", aliasText(t));
  }
  const attr = stringList(f.get("attr"), `nodeAttrs[${i}].attr`);
  const ipPool: Prefix[] = [];
  for (const text of stringList(f.get("ipPool"), `nodeAttrs[${i}].ipPool`)) {
    const p = parsePrefix(text.trim());
    if (!p) fail(`nodeAttrs[${i}].ipPool: invalid prefix ${JSON.stringify(text)}`);
    const r = prefixRange(p);
    const cg = prefixRange(CGNAT);
    if (p.family !== 4 || r.lo < cg.lo || r.hi > cg.hi) {
      fail(`nodeAttrs ipPool must be within 100.64.0.0/10: ${JSON.stringify(text)}`);
    }
    if (RESERVED_POOLS.some((x) => x.lo <= r.hi && r.lo <= x.hi)) {
      fail(`nodeAttrs ipPool must not overlap reserved Tailscale ranges: ${JSON.stringify(text)}`);
    }
    ipPool.push(p);
  }
  return { target, attr, ipPool };
}

function parseApprover(text: string, ctx: Ctx): Alias {
  const t = text.trim();
  if (
    !(t.includes("@") || t.startsWith("group:") || t.startsWith("tag:") ||
      t.startsWith("autogroup:"))
  ) {
    fail(`invalid auto approver format: ${JSON.stringify(text)}`);
  }
  const a = parseAlias(t);
  if (a.kind === "group" && !ctx.groups.has(a.name)) {
    fail(`group not defined in policy: ${JSON.stringify(a.name)}`);
  }
  if (a.kind === "tag" && !ctx.tagOwners.has(a.name)) {
    fail(`tag not found: ${JSON.stringify(a.name)}`);
  }
  return a;
}

function parseAutoApprovers(v: JSONValue | undefined, ctx: Ctx): AutoApproverSpec {
  const out: AutoApproverSpec = { routes: [], exitNode: [] };
  if (v === undefined || v === null) return out;
  if (!isObj(v)) fail("autoApprovers: expected an object");
  const f = fields(v, ["routes", "exitNode", "services"], "autoApprovers: ");
  for (const [route, approvers] of objectEntries(f.get("routes"), "autoApprovers.routes")) {
    const p = parsePrefix(route.trim());
    if (!p) fail(`autoApprovers.routes: invalid prefix ${JSON.stringify(route)}`);
    out.routes.push({
      prefix: p,
      approvers: stringList(approvers, `autoApprovers.routes[${JSON.stringify(route)}]`).map((a) =>
        parseApprover(a, ctx)
      ),
    });
  }
  out.exitNode = stringList(f.get("exitNode"), "autoApprovers.exitNode").map((a) =>
    parseApprover(a, ctx)
  );
  return out;
}

function parseTest(t: Obj, i: number): PolicyTestSpec {
  const f = fields(t, ["src", "proto", "accept", "deny", "srcPostureAttrs"], `tests[${i}]: `);
  const protoName = optString(f.get("proto"), `tests[${i}].proto`);
  return {
    src: optString(f.get("src"), `tests[${i}].src`) ?? "",
    protoName: protoName === "" ? undefined : protoName,
    accept: stringList(f.get("accept"), `tests[${i}].accept`),
    deny: stringList(f.get("deny"), `tests[${i}].deny`),
  };
}

function parseSSHTest(t: Obj, i: number, ctx: Ctx): SSHTestSpec {
  const f = fields(t, ["src", "dst", "accept", "deny", "check"], `sshTests[${i}]: `);
  const dst = stringList(f.get("dst"), `sshTests[${i}].dst`).map((d) => d.trim());
  for (const d of dst) {
    if (d === "autogroup:internet") {
      fail(`SSH tests dst contains disallowed element ${JSON.stringify(d)}`);
    }
    if (d.startsWith("tag:")) {
      if (!ctx.tagOwners.has(d)) fail(`SSH tests dst contains unknown tag ${JSON.stringify(d)}`);
      continue;
    }
    if (/^[0-9a-fA-F:.]+\/\d+$/.test(d)) {
      const p = parsePrefix(d);
      if (!p || p.bits < (p.family === 4 ? 32 : 128)) {
        fail(`SSH tests dst contains disallowed element ${JSON.stringify(d)}`);
      }
    }
    const h = ctx.hosts.get(d);
    if (h && h.prefix.bits < (h.prefix.family === 4 ? 32 : 128)) {
      fail(`SSH tests dst contains disallowed element ${JSON.stringify(d)}`);
    }
  }
  return {
    src: (optString(f.get("src"), `sshTests[${i}].src`) ?? "").trim(),
    dst,
    accept: stringList(f.get("accept"), `sshTests[${i}].accept`),
    deny: stringList(f.get("deny"), `sshTests[${i}].deny`),
    check: stringList(f.get("check"), `sshTests[${i}].check`),
  };
}
