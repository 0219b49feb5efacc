/**
 * Interactive logins waiting for an admin. A client without an auth key gets an AuthURL
 * `<server_url>/register/<id>`, then re-sends its RegisterRequest with Followup = that URL and
 * expects the request to block until the login is done. The admin runs
 * `headscale-deno auth register --auth-id <id> --user <name>` (→ register), `auth approve`
 * (a known machine re-authenticating keeps its owner) or `auth reject`. The method names and
 * shapes match the API's PendingAuthApi, so this object can be handed to it as is.
 *
 * Entries live for `ttlMs`; a decision is kept until then so a Followup that arrives after the
 * admin acted still gets it. The registry is bounded (oldest entries go first) because anyone
 * who completes a Noise handshake can create entries.
 */
import type { Logger } from "../log/log.ts";
import type { NodeRecord } from "../store/types.ts";
import type { Hostinfo } from "../tailcfg/types.ts";
import { NotFoundError } from "../state/errors.ts";
import { ExpiringMap } from "../auth_requests/expiring_map.ts";
import { newAuthId } from "../auth_requests/ids.ts";

/** What the client asked for, kept until an admin decides. */
export interface RegistrationRequest {
  machineKey: string;
  nodeKey: string;
  hostname: string;
  hostinfo: Hostinfo | null;
  ephemeral: boolean;
  /** Requested key expiry, null for the server default. */
  expiry: Date | null;
}

export type AuthVerdict =
  | { kind: "approved"; node: NodeRecord }
  | { kind: "rejected"; reason: string };

/** "unknown": no such login (or it expired): start a new one. "timeout": ask again later. */
export type WaitResult = AuthVerdict | "timeout" | "unknown";

/** What `list()` shows (no secrets: keys are public). */
export interface PendingAuthInfo {
  id: string;
  hostname: string;
  machineKey: string;
  nodeKey: string;
  createdAt: Date;
  expiresAt: Date;
  status: "pending" | "approved" | "rejected";
}

interface Entry {
  id: string;
  request: RegistrationRequest;
  createdAt: number;
  verdict: AuthVerdict | null;
  /** Approval in progress (the registration is being written). */
  approving: boolean;
  waiters: Set<(v: WaitResult) => void>;
}

export interface PendingAuthsDeps {
  /**
   * Performs the registration when an admin approves (State.registerNode with the user); a null
   * user keeps the owner of the machine's existing node.
   */
  register(request: RegistrationRequest, userId: number | null): Promise<NodeRecord>;
  log: Logger;
  /** How long an AuthURL stays valid (headscale: 15 minutes). */
  ttlMs?: number;
  maxEntries?: number;
  now?: () => Date;
}

export class PendingAuths {
  private readonly entries: ExpiringMap<Entry>;
  private readonly now: () => Date;

  constructor(private readonly deps: PendingAuthsDeps) {
    this.now = deps.now ?? (() => new Date());
    this.entries = new ExpiringMap({
      ttlMs: deps.ttlMs ?? 15 * 60_000,
      maxEntries: deps.maxEntries ?? 10_000,
      now: () => this.now().getTime(),
      // Expired, or pushed out by newer logins: a waiting client starts over.
      onDrop: (_id, e) => this.wake(e, "unknown"),
    });
  }

  private wake(e: Entry, outcome: WaitResult): void {
    for (const w of [...e.waiters]) w(outcome);
    e.waiters.clear();
  }

  /**
   * Starts an interactive login and returns its id. A machine asking again with the same node
   * key while its login is still pending gets the same id.
   */
  create(request: RegistrationRequest): string {
    for (const e of this.entries.values()) {
      if (
        !e.verdict && !e.approving && e.request.machineKey === request.machineKey &&
        e.request.nodeKey === request.nodeKey
      ) {
        e.request = request;
        return e.id;
      }
    }
    const id = newAuthId();
    this.entries.set(id, {
      id,
      request,
      createdAt: this.now().getTime(),
      verdict: null,
      approving: false,
      waiters: new Set(),
    });
    this.deps.log.info("interactive login started", {
      auth_id: id,
      hostname: request.hostname,
    });
    return id;
  }

  /** The pending request, if the id is known and not expired. */
  get(id: string): RegistrationRequest | undefined {
    return this.entries.get(id)?.request;
  }

  /**
   * Waits for the admin's decision. Resolves "unknown" for an unknown or expired id (or one
   * that belongs to another machine), "timeout" after `timeoutMs` or when `signal` aborts.
   */
  wait(
    id: string,
    machineKey: string,
    opts: { timeoutMs: number; signal?: AbortSignal },
  ): Promise<WaitResult> {
    const e = this.entries.get(id);
    if (!e || e.request.machineKey !== machineKey) return Promise.resolve("unknown");
    if (e.verdict) return Promise.resolve(e.verdict);
    if (opts.signal?.aborted) return Promise.resolve("timeout");
    return new Promise((resolve) => {
      const done = (v: WaitResult) => {
        clearTimeout(timer);
        opts.signal?.removeEventListener("abort", onAbort);
        e.waiters.delete(waiter);
        resolve(v);
      };
      const waiter = (v: WaitResult) => done(v);
      const onAbort = () => done("timeout");
      const timer = setTimeout(() => done("timeout"), opts.timeoutMs);
      e.waiters.add(waiter);
      opts.signal?.addEventListener("abort", onAbort, { once: true });
    });
  }

  private decide(e: Entry, verdict: AuthVerdict): void {
    e.verdict = verdict;
    this.wake(e, verdict);
  }

  private pending(id: string): Entry {
    const e = this.entries.get(id);
    if (!e) throw new NotFoundError(`no pending login with auth id ${id} (it may have expired)`);
    if (e.verdict || e.approving) {
      throw new NotFoundError(`the login with auth id ${id} was already decided`);
    }
    return e;
  }

  /**
   * `auth register --auth-id <id> --user <name>`: registers the waiting machine for the user;
   * the blocked client then logs in.
   */
  register(id: string, userId: number): Promise<NodeRecord> {
    return this.decideWith(id, userId);
  }

  /**
   * Approves a re-authentication (key rotation, expired key, --force-reauth) of a machine that
   * already has a node: it keeps its owner (or tags). Refused for a machine never seen before.
   */
  approve(id: string): Promise<NodeRecord> {
    return this.decideWith(id, null);
  }

  private async decideWith(id: string, userId: number | null): Promise<NodeRecord> {
    const e = this.pending(id);
    e.approving = true;
    let node: NodeRecord;
    try {
      node = await this.deps.register(e.request, userId);
    } catch (err) {
      e.approving = false;
      throw err;
    }
    e.approving = false;
    this.decide(e, { kind: "approved", node });
    this.deps.log.info("interactive login approved", { auth_id: id, node: node.id });
    return node;
  }

  // deno-lint-ignore require-await
  async reject(id: string, reason = "the login was rejected by an administrator"): Promise<void> {
    const e = this.pending(id);
    this.decide(e, { kind: "rejected", reason });
    this.deps.log.info("interactive login rejected", { auth_id: id });
  }

  list(): PendingAuthInfo[] {
    return this.entries.values().map((e) => ({
      id: e.id,
      hostname: e.request.hostname,
      machineKey: e.request.machineKey,
      nodeKey: e.request.nodeKey,
      createdAt: new Date(e.createdAt),
      expiresAt: new Date(e.createdAt + this.entries.ttlMs),
      status: e.verdict ? e.verdict.kind : "pending",
    }));
  }

  /** Wakes every waiter (shutdown); they answer with a fresh attempt later. */
  close(): void {
    for (const e of this.entries.values()) this.wake(e, "timeout");
    this.entries.clear();
  }
}
