/** What the policy manager refuses; the API maps these to gRPC codes (lib/api/service.ts). */

/** The policy does not parse, names what does not exist, or fails its own tests. */
export class PolicyInvalidError extends Error {
  override name = "PolicyInvalidError";
}

/** The policy comes from a file (policy.mode: file): it cannot be set through the API. */
export class PolicyModeError extends Error {
  override name = "PolicyModeError";
}
