/**
 * The write-time gate for a policy (`policy set` / `policy check`): parse, validate against
 * the tailnet, and run the policy's own tests and sshTests. Any failure is a PolicyError.
 */

import { type EngineOptions, PolicyEngine } from "./engine.ts";
import { parsePolicy } from "./parse.ts";
import { runPolicyTests, runSSHTests } from "./tests.ts";
import { type Policy, PolicyError, type PolicyNode, type PolicyUser } from "./types.ts";

export interface CheckedPolicy {
  /** null: no policy (allow all). */
  policy: Policy | null;
  /** An engine over the given tailnet, ready to use if the caller adopts the policy. */
  engine: PolicyEngine;
}

export function checkPolicy(
  text: string,
  users: readonly PolicyUser[],
  nodes: readonly PolicyNode[],
  options: EngineOptions = {},
): CheckedPolicy {
  const policy = parsePolicy(text);
  const engine = new PolicyEngine(policy, users, nodes, options);
  if (policy) {
    const failures = [...runPolicyTests(policy, engine), ...runSSHTests(policy, engine)];
    if (failures.length > 0) {
      throw new PolicyError(`test(s) failed:\n${failures.map((f) => `  ${f}`).join("\n")}`);
    }
  }
  return { policy, engine };
}
