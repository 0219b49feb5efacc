/**
 * Tailscale policy engine (ACLs, grants, SSH, nodeAttrs, autoApprovers, tests).
 *
 * ```ts
 * // policy set / policy check: parse, validate against the tailnet, run tests and sshTests.
 * const { policy, engine } = checkPolicy(text, users, nodes, { serverURL }); // or PolicyError
 *
 * // or step by step:
 * const policy = parsePolicy(text);           // HuJSON → Policy | null; throws PolicyError
 * const engine = new PolicyEngine(policy, users, nodes, { serverURL, tailnetDomains });
 * runPolicyTests(policy, engine); runSSHTests(policy, engine);   // → failure strings
 *
 * engine.filterFor(nodeId);      // tailcfg.FilterRule[] ([] = deny all inbound)
 * engine.sshPolicyFor(nodeId);   // tailcfg.SSHPolicy | null (null: policy has no ssh rules)
 * engine.peersOf(nodeId);        // NodeIdSet: has/size/iterate; symmetric; routes count
 * engine.capMapFor(nodeId);      // NodeCapMap from nodeAttrs / randomizeClientPort
 * engine.autoApprove(node, "10.0.0.0/24");       // autoApprovers decision for one route
 * engine.autoApprovedRoutes(node);               // the advertised routes autoApprovers cover
 * engine.upsertNode(node);       // → ids whose outputs may have changed
 * engine.removeNode(nodeId);     // → ids whose outputs may have changed
 * engine.setUsers(users); engine.setPolicy(policy);   // → every id
 * ```
 *
 * Inputs: `PolicyUser { id, name, email?, roles? }` and `PolicyNode { id, name, ipv4?, ipv6?,
 * userId? (ignored when tagged), tags, advertisedRoutes, approvedRoutes }`. A route serves when
 * it is both advertised and approved; /0 routes make an exit node.
 *
 * `parsePolicy("")` (or passing `null` to the engine) means no policy: allow all. A policy
 * without `acls` and `grants` also allows all; `"acls": []` denies all.
 *
 * Outputs are read-only: filters share their (frozen) SrcIPs arrays between nodes, and a
 * NodeIdSet is a view that is valid until the next change to the engine.
 *
 * Errors: every refusal is a `PolicyError` whose message names the offending part, worded like
 * the hosted service where known (e.g. `src=tag not found: "tag:x"`). Checks that need the
 * tailnet (e.g. `localpart:*@domain` must name a tailnet domain) run in the engine constructor
 * and `setPolicy` (unless `trustPolicy`, for loading a stored policy at boot).
 *
 * Scale: the policy is compiled once into rule templates indexed by membership key (user,
 * tag, member/tagged) and address; node sets are bitsets over dense slots; per-rule sources
 * and destinations are resolved lazily and cached, and a node change invalidates only the
 * rules that mention its keys. Computing one node's filter or peers touches only the rules
 * indexed under that node's keys plus address-based ones, and nodes with identical
 * memberships share one peer set and one filter recipe (filled with their own addresses).
 * upsertNode/removeNode compare each rule's SrcIPs and merged position before and after, so
 * the reported ids cover exactly the filters, SSH policies and peer sets that can differ (a
 * change to a node's approved routes reports every node).
 *
 * Conformance: `deno task policy-compat` replays captures of Tailscale's hosted control plane
 * (scripts/policy_compat.ts); tests/policy_*_test.ts cover parsing, autogroups, ports,
 * engine behaviour, fuzzing and incremental-versus-full equivalence.
 */

export { parsePolicy } from "./parse.ts";
export {
  allowAllPolicy,
  type EngineOptions,
  PolicyEngine,
  type ReachabilityRule,
  validateAgainstTailnet,
} from "./engine.ts";
export { runPolicyTests, runSSHTests } from "./tests.ts";
export { type CheckedPolicy, checkPolicy } from "./check.ts";
export { NodeIdSet } from "./nodeset.ts";
export { HuJSONError, parseHuJSON } from "./hujson.ts";
export {
  type Alias,
  type CapGrant,
  type FilterRule,
  type NetPortRange,
  type NodeCapMap,
  type Policy,
  PolicyError,
  type PolicyNode,
  type PolicyUser,
  type SSHAction,
  type SSHPolicy,
  type SSHPrincipal,
  type SSHRule,
} from "./types.ts";
