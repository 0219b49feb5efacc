/**
 * The Policy page's logic, without HTTP: check a draft with the server's own gate (the policy
 * manager: parser, tailnet, the policy's tests), place each problem at its line, and preview
 * who gains and who loses access against the policy in force; save through the same call the
 * API uses (SetPolicy). A save must name the review it follows (`reviewed`: a digest of the policy in force
 * and the draft), so a policy is never saved without its preview having been shown for exactly
 * that text, nor over a policy that changed in between.
 */
import { createHash } from "node:crypto";
import type { PolicyEngine, PolicyNode } from "../policy/mod.ts";
import { diffAccess } from "../policy/access_diff.ts";
import { locatePolicyErrors, type PolicyProblem } from "../policy/locate.ts";
import { PolicyInvalidError } from "../policy_manager/errors.ts";
import { type PolicyPreview, summarizeAccessDiff } from "./policy_preview.ts";

/** What the page needs of lib/policy_manager's PolicyManager. */
export interface PolicyGate {
  get(): Promise<{ policy: string; updatedAt: Date | null }>;
  preview(text: string): { before: PolicyEngine; after: PolicyEngine; nodes: PolicyNode[] };
}

export type PolicyCheck =
  | { ok: true; preview: PolicyPreview; reviewed: string }
  | { ok: false; problems: PolicyProblem[] };

export function reviewDigest(current: string, draft: string): string {
  return createHash("sha256").update(current).update("\0").update(draft).digest("hex");
}

export async function checkDraft(gate: PolicyGate, draft: string): Promise<PolicyCheck> {
  const current = (await gate.get()).policy;
  let compared;
  try {
    compared = gate.preview(draft);
  } catch (e) {
    if (e instanceof PolicyInvalidError) {
      return { ok: false, problems: problemsOf(draft, e.message) };
    }
    throw e;
  }
  const names = new Map(compared.nodes.map((n) => [n.id, n.name]));
  const diff = diffAccess(compared.before, compared.after, compared.nodes);
  return {
    ok: true,
    preview: summarizeAccessDiff(diff, (id) => names.get(id) ?? `node ${id}`),
    reviewed: reviewDigest(current, draft),
  };
}

export type SaveOutcome =
  | { saved: true }
  /** Not saved: not reviewed as it is (or the policy changed since), or refused. */
  | { saved: false; check: PolicyCheck };

/**
 * Saves a reviewed draft with `save` (the API's SetPolicy, audited by the caller), which
 * answers null or the refusal's message; a refusal comes back placed at its lines.
 */
export async function saveDraft(
  gate: PolicyGate,
  draft: string,
  reviewed: string,
  save: (draft: string) => Promise<string | null>,
): Promise<SaveOutcome> {
  const current = (await gate.get()).policy;
  if (reviewed !== reviewDigest(current, draft)) {
    return { saved: false, check: await checkDraft(gate, draft) };
  }
  const error = await save(draft);
  if (error === null) return { saved: true };
  return { saved: false, check: { ok: false, problems: problemsOf(draft, error) } };
}

/** The manager names its source ("policy: …"); on this page that goes without saying. */
function problemsOf(draft: string, message: string): PolicyProblem[] {
  return locatePolicyErrors(draft, message.replace(/^policy: /, ""));
}
