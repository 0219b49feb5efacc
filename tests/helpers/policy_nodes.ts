/** A policy engine node with addresses derived from its id (100.64.0.<id>, fd7a:115c:a1e0::<id>). */
import type { PolicyNode } from "../../lib/policy/mod.ts";

export function policyNode(id: number, extra: Partial<PolicyNode> = {}): PolicyNode {
  return {
    id,
    name: `n${id}`,
    ipv4: `100.64.0.${id}`,
    ipv6: `fd7a:115c:a1e0::${id}`,
    tags: [],
    advertisedRoutes: [],
    approvedRoutes: [],
    ...extra,
  };
}
