/**
 * Tailscale SSH "check" rules, the way headscale v0.29 runs them. When a check rule matches an
 * incoming SSH connection, the destination's tailscaled asks, over its own Noise connection,
 * `GET /machine/ssh/action/<src>/to/<dst>?local_user=…`:
 *
 * - the pair was approved within the rule's checkPeriod → accept at once;
 * - otherwise a check starts: HoldAndDelegate back here with an `auth_id`, and a message (shown
 *   to the SSH user) pointing at `<server_url>/auth/<id>`, whose page names the command
 *   `headscale-deno auth approve --auth-id <id>`;
 * - the follow-up (with `auth_id`) waits for `auth approve` (accept; remembered for the check
 *   period) or `auth reject` (reject). A check that expires is a reject.
 *
 * The check period comes from our policy, never from the URL, and a policy change forgets every
 * approval. Checks are the "ssh-check" kind of the auth-request registry (../auth_requests),
 * which bounds their number and expires them, since any node can start them, and dispatches
 * `auth approve` / `auth reject` to them.
 */
import type { Logger } from "../log/log.ts";
import type { SSHAction } from "../policy/types.ts";
import type { NodeRecord } from "../store/types.ts";
import { NotFoundError } from "../state/errors.ts";
import { isAuthId } from "../auth_requests/ids.ts";
import type { AuthRequest, AuthRequests, RequestKind } from "../auth_requests/registry.ts";
import { HttpError } from "./http_util.ts";

export interface SshCheckDeps {
  /** Where the checks wait, with logins and debug nodes. */
  requests: AuthRequests;
  getNode(id: number): NodeRecord | undefined;
  /** The check period (ms, 0 = every session) for the pair, or null when no check rule covers it. */
  checkPeriodMs(src: number, dst: number): number | null;
  serverUrl: string;
  log: Logger;
  now?: () => number;
}

type Verdict = "approved" | "rejected";

/** The pair a check is bound to: knowing its id must not let any other pair in. */
interface Pair {
  src: number;
  dst: number;
}

/** Every action we send allows forwarding, as headscale's do. */
function baseAction(): SSHAction {
  return {
    allowAgentForwarding: true,
    allowLocalPortForwarding: true,
    allowRemotePortForwarding: true,
  };
}

export class SshChecks {
  private readonly checks: RequestKind<Pair>;
  /** "src:dst" → when the pair was last approved. */
  private readonly approvedAt = new Map<string, number>();
  private readonly now: () => number;

  constructor(private readonly deps: SshCheckDeps) {
    this.now = deps.now ?? Date.now;
    this.checks = deps.requests.kind<Pair>("ssh-check", {
      noun: "SSH check",
      keepsDecision: true,
      register: (check) =>
        Promise.reject(
          new NotFoundError(
            `no pending login with auth id ${check.id}: it is an SSH check (auth approve or ` +
              "auth reject)",
          ),
        ),
      // `auth approve --auth-id <id>`: the held SSH connection goes ahead (the follow-up reads
      // the verdict and remembers the approval for the check period).
      approve: () => Promise.resolve(null),
      describe: ({ src, dst }) => ({ src, dst }),
    });
  }

  /**
   * Answers `GET /machine/ssh/action/<src>/to/<dst>[?auth_id=…]` from the Noise connection of
   * `machineKey`, which must be the destination's: only it may ask about its own SSH server.
   * A follow-up waits until an admin decides, the check expires, or `signal` aborts.
   */
  async action(
    src: number,
    dst: number,
    authId: string | null,
    machineKey: string,
    signal?: AbortSignal,
  ): Promise<SSHAction> {
    const dstNode = this.deps.getNode(dst);
    if (!dstNode) throw new HttpError(404, "dst node not found");
    if (dstNode.machineKey !== machineKey) {
      throw new HttpError(401, "machine key does not match dst node");
    }
    const period = this.deps.checkPeriodMs(src, dst);
    if (authId !== null) return await this.followUp(src, dst, authId, period, signal);
    const last = this.approvedAt.get(`${src}:${dst}`);
    if (period !== null && period > 0 && last !== undefined && this.now() - last < period) {
      this.deps.log.debug("SSH check: approved within the check period", { src, dst });
      return { ...baseAction(), accept: true };
    }
    return this.hold(src, dst);
  }

  private hold(src: number, dst: number): SSHAction {
    const { id } = this.checks.open({ src, dst });
    const base = this.deps.serverUrl.replace(/\/+$/, "");
    this.deps.log.info("SSH check pending, waiting for approval", { auth_id: id, src, dst });
    return {
      ...baseAction(),
      // tailscaled fills in the $ placeholders before it asks again.
      holdAndDelegate:
        `${base}/machine/ssh/action/$SRC_NODE_ID/to/$DST_NODE_ID?auth_id=${id}&local_user=$LOCAL_USER`,
      message: "# Headscale SSH requires an additional check.\n" +
        `# To authenticate, visit: ${base}/auth/${id}\n` +
        "# Authentication checked with Headscale SSH.\n",
    };
  }

  private async followUp(
    src: number,
    dst: number,
    authId: string,
    period: number | null,
    signal?: AbortSignal,
  ): Promise<SSHAction> {
    if (!isAuthId(authId)) throw new HttpError(400, "invalid auth_id");
    const check = this.checks.get(authId);
    if (!check) {
      // Expired or lost in a restart: start over while a check is still required, rather
      // than leave the client asking about a dead id until its SSH connection times out.
      if (period !== null) return this.hold(src, dst);
      throw new HttpError(400, "invalid auth_id: no such SSH check");
    }
    // The id is bound to its pair: knowing it must not approve any other pair.
    if (check.data.src !== src || check.data.dst !== dst) {
      throw new HttpError(401, "src/dst pair does not match the SSH check");
    }
    const verdict = await this.waitFor(check, signal);
    this.checks.remove(check); // A verdict is used once.
    if (verdict === "rejected") return { ...baseAction(), reject: true };
    if (period !== null) this.approvedAt.set(`${src}:${dst}`, this.now());
    return { ...baseAction(), accept: true };
  }

  /** The decision; expiry, being pushed out and shutdown refuse the connection. */
  private async waitFor(check: AuthRequest<Pair>, signal?: AbortSignal): Promise<Verdict> {
    const outcome = await this.checks.wait(check, { signal });
    if (outcome === "aborted") throw new HttpError(401, "SSH check follow-up cancelled");
    return typeof outcome === "string" ? "rejected" : outcome.kind;
  }

  /** The source node of the undecided SSH check `id` (who may vouch for it with OIDC). */
  sourceOf(id: string): number | undefined {
    const check = this.checks.get(id);
    return check?.status === "pending" ? check.data.src : undefined;
  }

  /** True when `id` is an undecided SSH check (the page at /auth/<id> names it). */
  has(id: string): boolean {
    return this.checks.get(id)?.status === "pending";
  }

  /** The policy changed: earlier approvals no longer vouch for anything. */
  forgetApprovals(): void {
    this.approvedAt.clear();
  }
}
