/**
 * The policy engine (lib/policy) seen through the mapper's PolicyView. Nodes the engine does
 * not know yet (the glue upserts them from state events) see nobody and get a deny-all filter
 * rather than an exception.
 */
import type { PolicyEngine } from "../policy/mod.ts";
import type { PolicyView } from "./policy_view.ts";

export function policyEngineView(engine: PolicyEngine): PolicyView {
  const known = (id: number) => engine.node(id) !== undefined;
  return {
    peersOf: (id) => known(id) ? engine.peersOf(id) : [],
    canSee: (a, b) => known(a) && engine.peersOf(a).has(b),
    filterFor: (id) => known(id) ? engine.filterFor(id) : [],
    sshPolicyFor: (id) => known(id) ? engine.sshPolicyFor(id) : null,
    nodeCapMap: (id) => known(id) ? engine.capMapFor(id) : null,
    sshCheckPeriodMs: (src, dst) => engine.sshCheckPeriodMs(src, dst),
    mayOwnTag: (user, tag) => engine.userMayOwnTag(user, tag),
  };
}
