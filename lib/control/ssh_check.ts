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
 * approval. Checks are bounded in number and live `ttlMs`, since any node can start them.
 */
import type { Logger } from "../log/log.ts";
import type { SSHAction } from "../policy/types.ts";
import type { NodeRecord } from "../store/types.ts";
import { NotFoundError } from "../state/errors.ts";
import { isAuthId, newAuthId } from "../auth_requests/ids.ts";
import { ExpiringMap } from "../auth_requests/expiring_map.ts";
import { HttpError } from "./http_util.ts";

export interface SshCheckDeps {
  getNode(id: number): NodeRecord | undefined;
  /** The check period (ms, 0 = every session) for the pair, or null when no check rule covers it. */
  checkPeriodMs(src: number, dst: number): number | null;
  serverUrl: string;
  log: Logger;
  /** How long a check waits for an admin (headscale: 15 minutes). */
  ttlMs?: number;
  maxEntries?: number;
  now?: () => number;
}

type Verdict = "approved" | "rejected";

interface Check {
  id: string;
  src: number;
  dst: number;
  createdAt: number;
  verdict: Verdict | null;
  waiters: Set<(v: Verdict) => void>;
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
  private readonly checks: ExpiringMap<Check>;
  /** "src:dst" → when the pair was last approved. */
  private readonly approvedAt = new Map<string, number>();
  private readonly now: () => number;

  constructor(private readonly deps: SshCheckDeps) {
    this.now = deps.now ?? Date.now;
    this.checks = new ExpiringMap({
      ttlMs: deps.ttlMs ?? 15 * 60_000,
      maxEntries: deps.maxEntries ?? 10_000,
      now: this.now,
      // Expired or pushed out: a held connection is refused.
      onDrop: (_id, check) => this.finish(check, "rejected"),
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
    const id = newAuthId();
    this.checks.set(id, {
      id,
      src,
      dst,
      createdAt: this.now(),
      verdict: null,
      waiters: new Set(),
    });
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
    if (check.src !== src || check.dst !== dst) {
      throw new HttpError(401, "src/dst pair does not match the SSH check");
    }
    const verdict = check.verdict ?? await this.waitFor(check, signal);
    this.checks.delete(check.id); // A verdict is used once.
    if (verdict === "rejected") return { ...baseAction(), reject: true };
    if (period !== null) this.approvedAt.set(`${src}:${dst}`, this.now());
    return { ...baseAction(), accept: true };
  }

  private waitFor(check: Check, signal?: AbortSignal): Promise<Verdict> {
    return new Promise((resolve, reject) => {
      // Expiry without a sweep: nothing else may come along to run one.
      const timer = setTimeout(
        () => this.drop(check),
        Math.max(0, check.createdAt + this.checks.ttlMs - this.now()),
      );
      const done = (v: Verdict) => {
        clearTimeout(timer);
        signal?.removeEventListener("abort", onAbort);
        resolve(v);
      };
      const onAbort = () => {
        clearTimeout(timer);
        check.waiters.delete(done);
        reject(new HttpError(401, "SSH check follow-up cancelled"));
      };
      if (signal?.aborted) return onAbort();
      check.waiters.add(done);
      signal?.addEventListener("abort", onAbort, { once: true });
    });
  }

  /** Decides a check; it stays (until its follow-up reads it or it expires) if still listed. */
  private finish(check: Check, verdict: Verdict): void {
    check.verdict ??= verdict;
    for (const w of [...check.waiters]) w(check.verdict);
    check.waiters.clear();
  }

  private drop(check: Check): void {
    this.finish(check, "rejected");
    this.checks.delete(check.id);
  }

  /** True when `id` is an undecided SSH check (the API's auth approve/reject then mean it). */
  has(id: string): boolean {
    return this.checks.get(id)?.verdict === null;
  }

  /** `auth approve --auth-id <id>`: the held SSH connection goes ahead. */
  approve(id: string): void {
    this.finish(this.pending(id), "approved");
    this.deps.log.info("SSH check approved", { auth_id: id });
  }

  /** `auth reject --auth-id <id>`: the held SSH connection is refused. */
  reject(id: string): void {
    this.finish(this.pending(id), "rejected");
    this.deps.log.info("SSH check rejected", { auth_id: id });
  }

  private pending(id: string): Check {
    const check = this.checks.get(id);
    if (!check || check.verdict !== null) {
      throw new NotFoundError(`no pending SSH check with auth id ${id}`);
    }
    return check;
  }

  /** The policy changed: earlier approvals no longer vouch for anything. */
  forgetApprovals(): void {
    this.approvedAt.clear();
  }

  /** Refuses every waiting check (shutdown). */
  close(): void {
    for (const check of this.checks.values()) this.finish(check, "rejected");
    this.checks.clear();
  }
}
