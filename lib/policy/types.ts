/**
 * Types at the policy engine's boundaries: the tailnet it is given (users, nodes), the parsed
 * policy model, and the wire shapes it produces (tailcfg FilterRule / SSHRule, JSON names as in
 * tailcfg).
 */

import type { Prefix } from "../net/ip.ts";
import type { IPRange } from "./ipset.ts";

// ---------------------------------------------------------------------------------------------
// Input: the tailnet.

export interface PolicyUser {
  id: number;
  /** Login name, e.g. "alice" (matched by "alice@" in a policy). */
  name: string;
  email?: string;
  /** Tailnet roles ("owner", "admin", "it-admin", …) for autogroup:admin and friends. */
  roles?: string[];
}

export interface PolicyNode {
  id: number;
  /** Hostname (used in test reports). */
  name: string;
  ipv4?: string;
  ipv6?: string;
  /** Owner; absent (or ignored) when the node is tagged. */
  userId?: number;
  tags: string[];
  /** Routes the node advertises (Hostinfo.RoutableIPs). */
  advertisedRoutes: string[];
  /** Routes an admin or an auto-approver approved. A route serves only if advertised too. */
  approvedRoutes: string[];
}

/** Thrown for every policy the engine refuses; the message names the offending part. */
export class PolicyError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "PolicyError";
  }
}

// ---------------------------------------------------------------------------------------------
// The parsed policy.

export type AutogroupName =
  | "member"
  | "tagged"
  | "self"
  | "internet"
  | "nonroot"
  | "danger-all"
  | "admin"
  | "owner"
  | "it-admin"
  | "network-admin"
  | "billing-admin"
  | "auditor"
  | "shared";

export type Alias =
  | { kind: "wildcard" }
  | { kind: "user"; token: string }
  | { kind: "userDomain"; domain: string }
  | { kind: "group"; name: string }
  | { kind: "tag"; name: string }
  | { kind: "host"; name: string }
  | { kind: "prefix"; range: IPRange; text: string }
  | { kind: "autogroup"; name: AutogroupName };

export interface PortRange {
  first: number;
  last: number;
}

export const ALL_PORTS: PortRange = Object.freeze({ first: 0, last: 65535 });

/** One `ip` entry of a grant (or an ACL's proto + one destination's ports). */
export interface ProtoPorts {
  /** IANA numbers; undefined = the client default (TCP, UDP, ICMP, ICMPv6). */
  protocols?: number[];
  ports: PortRange[];
}

export type CapMapValue = unknown[] | null;

export interface Grant {
  src: Alias[];
  dst: Alias[];
  ip: ProtoPorts[];
  app?: Record<string, unknown[]>;
  via: string[];
}

export interface SSHRuleSpec {
  action: "accept" | "check";
  src: Alias[];
  dst: Alias[];
  users: string[];
  /** Nanoseconds; undefined = default (12h); 0 = always check. */
  checkPeriodNs?: number;
  acceptEnv?: string[];
}

export interface NodeAttrSpec {
  target: Alias[];
  attr: string[];
  ipPool: Prefix[];
}

export interface PolicyTestSpec {
  src: string;
  proto?: number;
  protoName?: string;
  accept: string[];
  deny: string[];
}

export interface SSHTestSpec {
  src: string;
  dst: string[];
  accept: string[];
  deny: string[];
  check: string[];
}

export interface AutoApproverSpec {
  routes: { prefix: Prefix; approvers: Alias[] }[];
  exitNode: Alias[];
}

export interface Policy {
  groups: Map<string, string[]>;
  hosts: Map<string, { range: IPRange; prefix: Prefix }>;
  tagOwners: Map<string, string[]>;
  /** Grants, then each ACL as one grant per destination: the order the service compiles. */
  grants: Grant[];
  ssh: SSHRuleSpec[];
  nodeAttrs: NodeAttrSpec[];
  autoApprovers: AutoApproverSpec;
  tests: PolicyTestSpec[];
  sshTests: SSHTestSpec[];
  randomizeClientPort: boolean;
  /** Domains named by `localpart:*@domain` (validated against the tailnet when it is known). */
  localpartDomains: string[];
  /** Domains named by `user:*@domain` aliases. */
  userDomains: string[];
}

// ---------------------------------------------------------------------------------------------
// Output shapes (tailcfg JSON names).

export interface NetPortRange {
  IP: string;
  Ports: { First: number; Last: number };
}

export interface CapGrant {
  Dsts: string[];
  CapMap: Record<string, CapMapValue>;
}

export interface FilterRule {
  SrcIPs: string[];
  DstPorts?: NetPortRange[];
  IPProto?: number[];
  CapGrant?: CapGrant[];
}

export interface SSHPrincipal {
  nodeIP?: string;
  node?: string;
  userLogin?: string;
  any?: boolean;
}

export interface SSHAction {
  accept?: boolean;
  reject?: boolean;
  message?: string;
  holdAndDelegate?: string;
  sessionDuration?: number;
  allowAgentForwarding?: boolean;
  allowLocalPortForwarding?: boolean;
  allowRemotePortForwarding?: boolean;
}

export interface SSHRule {
  principals: SSHPrincipal[];
  sshUsers: Record<string, string>;
  action: SSHAction;
  acceptEnv?: string[];
}

export interface SSHPolicy {
  rules: SSHRule[];
}

export type NodeCapMap = Record<string, unknown[] | null>;
