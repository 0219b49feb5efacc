/**
 * Compiles a Policy against the tailnet's users into rule templates: every alias is resolved
 * to a selector that no longer needs the policy (groups become user keys, hosts become
 * addresses). Node membership is decided later, per node, by the engine.
 *
 * Node membership keys: "u:<userId>" (untagged node of that user), "t:<tag>", "member"
 * (untagged), "tagged", "*" (every node).
 */

import type { Prefix } from "../net/ip.ts";
import { INTERNET, IPSet, TAILNET_ADDRESSES } from "./ipset.ts";
import { localpartDomain } from "./parse.ts";
import { aliasText } from "./syntax.ts";
import type { Alias, Grant, Policy, PolicyUser, PortRange, SSHRuleSpec } from "./types.ts";

export type Sel =
  | { t: "all" }
  | { t: "key"; key: string }
  | { t: "addr"; set: IPSet; text: string }
  | { t: "internet" }
  | { t: "self" }
  | { t: "dangerAll" };

export interface DstSpec {
  sel: Sel;
  ports: PortRange[];
}

export type TemplateKind = "ip" | "cap" | "companion";

/** One filter rule shape before it meets a node. */
export interface Template {
  /** Position in the service's compile order (rules merge at their first position). */
  seq: number;
  kind: TemplateKind;
  /** The destination is autogroup:self: computed per node, sources narrowed to the owner. */
  self: boolean;
  /** Via tags: the rule goes only to routers with these tags that route a destination. */
  via?: string[];
  src: Sel[];
  dst: DstSpec[];
  protos?: number[];
  capMap?: Record<string, unknown[] | null>;
}

export interface CompiledSSHRule {
  action: "accept" | "check";
  src: Sel[];
  dstSelf: boolean;
  dst: Sel[];
  users: string[];
  /** userId → local login for `localpart:*@domain` entries. */
  localparts: Map<number, string>;
  acceptEnv?: string[];
  checkPeriodNs?: number;
  /** The rule lists a canonical `localpart:*@domain` entry. */
  hasLocalpart: boolean;
  /** The login map every principal of the rule gets (sshUsers). */
  baseUsers: Record<string, string>;
}

export interface CompiledNodeAttr {
  target: Sel[];
  attr: string[];
}

export interface CompiledPolicy {
  templates: Template[];
  ssh: CompiledSSHRule[];
  nodeAttrs: CompiledNodeAttr[];
  randomizeClientPort: boolean;
  autoApprovers: { prefix: Prefix; approvers: Sel[] }[];
  exitApprovers: Sel[];
  /** Every membership key any template mentions (for incremental invalidation). */
  keys: Set<string>;
}

/** Well-known capabilities whose grant implies a reversed companion grant. */
const COMPANION_CAPS: [string, string][] = [
  ["tailscale.com/cap/drive", "tailscale.com/cap/drive-sharer"],
  ["tailscale.com/cap/relay", "tailscale.com/cap/relay-target"],
];

export class UserIndex {
  private readonly byEmail = new Map<string, PolicyUser>();
  private readonly byName = new Map<string, PolicyUser[]>();
  readonly users: PolicyUser[];

  constructor(users: readonly PolicyUser[]) {
    this.users = [...users].sort((a, b) => a.id - b.id);
    for (const u of this.users) {
      if (u.email) this.byEmail.set(u.email, u);
      const list = this.byName.get(u.name) ?? [];
      list.push(u);
      this.byName.set(u.name, list);
    }
  }

  /** "alice@example.com" matches by email, "alice@" (or "alice@x" failing that) by name. */
  resolve(token: string): PolicyUser | undefined {
    const t = token.endsWith("@") ? token.slice(0, -1) : token;
    return this.byEmail.get(t) ?? this.byName.get(t)?.[0];
  }

  inDomain(domain: string): PolicyUser[] {
    const d = domain.toLowerCase();
    return this.users.filter((u) =>
      u.email && u.email.slice(u.email.lastIndexOf("@") + 1).toLowerCase() === d
    );
  }

  withRole(role: string): PolicyUser[] {
    return this.users.filter((u) => u.roles?.includes(role));
  }
}

export function compilePolicy(policy: Policy, userList: readonly PolicyUser[]): CompiledPolicy {
  const users = new UserIndex(userList);
  const keys = new Set<string>();
  const sel = (a: Alias): Sel[] => {
    const out = resolveAlias(a, policy, users);
    for (const s of out) if (s.t === "key") keys.add(s.key);
    return out;
  };

  const templates: Template[] = [];
  for (const g of policy.grants) compileGrant(g, sel, templates);

  const ssh = policy.ssh.map((r) => compileSSH(r, sel, users));
  const nodeAttrs = policy.nodeAttrs.filter((n) => n.attr.length > 0).map((n) => ({
    target: n.target.flatMap(sel),
    attr: n.attr,
  }));
  return {
    templates,
    ssh,
    nodeAttrs,
    randomizeClientPort: policy.randomizeClientPort,
    autoApprovers: policy.autoApprovers.routes.map((r) => ({
      prefix: r.prefix,
      approvers: r.approvers.flatMap(sel),
    })),
    exitApprovers: policy.autoApprovers.exitNode.flatMap(sel),
    keys,
  };
}

export function resolveAlias(a: Alias, policy: Policy, users: UserIndex): Sel[] {
  const userKeys = (list: (PolicyUser | undefined)[]): Sel[] =>
    list.filter((u): u is PolicyUser => u !== undefined).map((u) => ({
      t: "key",
      key: `u:${u.id}`,
    }));
  switch (a.kind) {
    case "wildcard":
      return [{ t: "all" }];
    case "user":
      return userKeys([users.resolve(a.token)]);
    case "userDomain":
      return userKeys(users.inDomain(a.domain));
    case "group":
      return userKeys((policy.groups.get(a.name) ?? []).map((m) => users.resolve(m)));
    case "tag":
      return [{ t: "key", key: `t:${a.name}` }];
    case "host": {
      const h = policy.hosts.get(a.name);
      return h ? [{ t: "addr", set: IPSet.of([h.range]), text: a.name }] : [];
    }
    case "prefix":
      return [{ t: "addr", set: IPSet.of([a.range]), text: a.text }];
    case "autogroup":
      switch (a.name) {
        case "member":
          return [{ t: "key", key: "member" }];
        case "tagged":
          return [{ t: "key", key: "tagged" }];
        case "internet":
          return [{ t: "internet" }];
        case "self":
          return [{ t: "self" }];
        case "danger-all":
          return [{ t: "dangerAll" }];
        case "admin":
        case "owner":
        case "it-admin":
        case "network-admin":
        case "billing-admin":
        case "auditor":
          return userKeys(users.withRole(a.name));
        default:
          return [];
      }
  }
}

function compileGrant(g: Grant, sel: (a: Alias) => Sel[], out: Template[]): void {
  // A literally empty src or dst list grants nothing.
  if (g.src.length === 0 || g.dst.length === 0) return;
  const src = g.src.flatMap(sel);
  const seq = () => out.length;

  if (g.via.length > 0) {
    const dst = g.dst.flatMap(sel).map((s) => ({ sel: s, ports: [] as PortRange[] }));
    for (const ip of g.ip) {
      out.push({
        seq: seq(),
        kind: "ip",
        self: false,
        via: g.via,
        src,
        dst: dst.map((d) => ({ sel: d.sel, ports: ip.ports })),
        protos: ip.protocols,
      });
    }
    // An app grant through a router puts no rule in any filter, but the sources and the
    // routers still see each other.
    if (g.app && Object.keys(g.app).length > 0) {
      out.push({
        seq: seq(),
        kind: "cap",
        self: false,
        via: g.via,
        src,
        dst,
        capMap: { ...g.app },
      });
    }
    return;
  }

  const selfDst = g.dst.some((d) => d.kind === "autogroup" && d.name === "self");
  const otherDst = g.dst.filter((d) => !(d.kind === "autogroup" && d.name === "self")).flatMap(sel);
  const emit = (self: boolean, dsts: Sel[]) => {
    for (const ip of g.ip) {
      out.push({
        seq: seq(),
        kind: "ip",
        self,
        src,
        dst: dsts.map((s) => ({ sel: s, ports: ip.ports })),
        protos: ip.protocols,
      });
    }
    if (g.app && Object.keys(g.app).length > 0) {
      const capMap: Record<string, unknown[] | null> = { ...g.app };
      out.push({
        seq: seq(),
        kind: "cap",
        self,
        src,
        dst: dsts.map((s) => ({ sel: s, ports: [] })),
        capMap,
      });
      for (const [cap, companion] of COMPANION_CAPS) {
        if (!(cap in g.app)) continue;
        // Reversed: the destinations become sources, the sources receive the grant.
        out.push({
          seq: seq(),
          kind: "companion",
          self,
          src: self ? src : dsts,
          dst: src.map((s) => ({ sel: s, ports: [] })),
          capMap: { [companion]: null },
        });
      }
    }
  };
  if (otherDst.length > 0) emit(false, otherDst);
  if (selfDst) emit(true, [{ t: "self" }]);
}

function compileSSH(r: SSHRuleSpec, sel: (a: Alias) => Sel[], users: UserIndex): CompiledSSHRule {
  const localparts = new Map<number, string>();
  for (const u of r.users) {
    const domain = localpartDomain(u);
    if (domain === null) continue;
    for (const user of users.users) {
      if (!user.email) continue;
      const at = user.email.lastIndexOf("@");
      if (at >= 0 && user.email.slice(at + 1).toLowerCase() === domain.toLowerCase()) {
        localparts.set(user.id, user.email.slice(0, at));
      }
    }
  }
  const baseUsers: Record<string, string> = {};
  if (r.users.includes("autogroup:nonroot")) baseUsers["*"] = "=";
  baseUsers.root = r.users.includes("root") ? "root" : "";
  for (const u of r.users) {
    if (u === "root" || u === "autogroup:nonroot" || localpartDomain(u) !== null) continue;
    baseUsers[u] = u;
  }
  return {
    hasLocalpart: r.users.some((u) => localpartDomain(u) !== null),
    baseUsers,
    action: r.action,
    src: r.src.flatMap(sel),
    dstSelf: r.dst.some((d) => d.kind === "autogroup" && d.name === "self"),
    dst: r.dst.filter((d) => !(d.kind === "autogroup" && d.name === "self")).flatMap(sel),
    users: r.users,
    localparts,
    acceptEnv: r.acceptEnv,
    checkPeriodNs: r.checkPeriodNs,
  };
}

/** The literal addresses a selector stands for on the source side (without node members). */
export function selStaticAddresses(s: Sel): IPSet {
  switch (s.t) {
    case "all":
      return TAILNET_ADDRESSES;
    case "addr":
      return s.set;
    case "internet":
      return INTERNET;
    default:
      return IPSet.EMPTY;
  }
}

export function selText(s: Sel): string {
  switch (s.t) {
    case "all":
      return "*";
    case "key":
      return s.key;
    case "addr":
      return s.text;
    case "internet":
      return "autogroup:internet";
    case "self":
      return "autogroup:self";
    case "dangerAll":
      return "autogroup:danger-all";
  }
}

export { aliasText };
