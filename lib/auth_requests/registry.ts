/**
 * Auth requests: everything that waits for an admin's `auth register`, `auth approve` or
 * `auth reject`. One registry holds them all, whatever their kind:
 *
 * - "login": an interactive login at `<server_url>/register/<id>` (../control/pending_auths.ts);
 * - "ssh-check": a Tailscale SSH check at `<server_url>/auth/<id>` (../control/ssh_check.ts);
 * - "debug-node": a made-up machine parked by `debug create-node` (../api/debug_registrations.ts).
 *
 * The registry owns what the kinds share: one id space (./ids.ts), one expiry (headscale keeps
 * these 15 minutes; they do not survive a restart), one bound (oldest first: anyone who completes
 * a Noise handshake can open logins), the decision (pending → approved or rejected, once), and
 * the clients waiting for it. What a decision does stays with the module that owns the kind, as
 * its KindHandler: a login's approval registers the machine, a debug node's creates its node, an
 * SSH check's lets the connection in. A new kind (OIDC logins) is a name in AuthRequestKind and
 * a handler.
 */
import type { Logger } from "../log/log.ts";
import { AlreadyExistsError, NotFoundError } from "../state/errors.ts";
import type { NodeRecord } from "../store/types.ts";
import { ExpiringMap } from "./expiring_map.ts";
import { newAuthId } from "./ids.ts";

export type AuthRequestKind = "login" | "ssh-check" | "debug-node";

export type AuthVerdict =
  | { kind: "approved"; node: NodeRecord | null }
  | { kind: "rejected"; reason: string };

/**
 * How a wait ended: the verdict, or "timeout" (the wait's own limit), "aborted" (its signal),
 * "expired" (the request expired or was pushed out by newer ones), "closed" (shutdown).
 */
export type WaitOutcome = AuthVerdict | "timeout" | "aborted" | "expired" | "closed";

/** One request. `data` is the kind's own (what the machine asked for, the SSH pair). */
export interface AuthRequest<D> {
  readonly id: string;
  readonly kind: AuthRequestKind;
  data: D;
  /** Epoch milliseconds. */
  readonly createdAt: number;
  readonly expiresAt: number;
  /** "deciding": an approval is being carried out (a registration is being written). */
  readonly status: "pending" | "deciding" | "approved" | "rejected";
  readonly verdict: AuthVerdict | null;
}

/** What `list()` shows of a request (no secrets: keys are public). */
export interface AuthRequestInfo extends AuthRequestDetails {
  id: string;
  kind: AuthRequestKind;
  status: "pending" | "approved" | "rejected";
  createdAt: Date;
  expiresAt: Date;
}

/** The kind's description of its request: the machine waiting, or the SSH pair. */
export interface AuthRequestDetails {
  hostname?: string;
  machineKey?: string;
  nodeKey?: string;
  src?: number;
  dst?: number;
}

/** What a decision does for one kind; the module that owns the kind supplies it. */
export interface KindHandler<D> {
  /** How messages and logs name a request of this kind ("login", "SSH check"). */
  readonly noun: string;
  /**
   * Whether a decision is kept (until the request expires or its kind removes it) for a client
   * that asks for it later. Without one waiting (a debug node), a decided request is gone.
   */
  readonly keepsDecision: boolean;
  /** `auth register --user`: the node made for the user; throws to refuse (nothing changes). */
  register(request: AuthRequest<D>, userId: number): Promise<NodeRecord>;
  /** `auth approve`: the node it made, null when an approval makes none; throws to refuse. */
  approve(request: AuthRequest<D>): Promise<NodeRecord | null>;
  describe(data: D): AuthRequestDetails;
}

export interface WaitOptions {
  timeoutMs?: number;
  signal?: AbortSignal;
}

/** A kind plugged into the registry: its owner opens, finds and waits on requests with it. */
export interface RequestKind<D> {
  /**
   * Opens a pending request under a new id, or under `id` (an admin's choice), replacing a
   * request of the same kind there; an id taken by another kind is refused.
   */
  open(data: D, opts?: { id?: string }): AuthRequest<D>;
  /** The live request of this kind with that id, whatever its status. */
  get(id: string): AuthRequest<D> | undefined;
  /** The live requests of this kind, oldest first. */
  all(): AuthRequest<D>[];
  /**
   * Waits for the decision (at once when there is one). Ends "timeout" after `timeoutMs`,
   * "aborted" when `signal` aborts, "expired" when the request expires or is pushed out.
   */
  wait(request: AuthRequest<D>, opts?: WaitOptions): Promise<WaitOutcome>;
  /** Ends the request now (a verdict its client has read). */
  remove(request: AuthRequest<D>): void;
}

/** What `auth register/approve/reject` (the API, the CLI) act on, by id, whatever the kind. */
export interface AuthRequests {
  /** Plugs in a kind: requests opened through the handle are decided by `handler`. */
  kind<D>(kind: AuthRequestKind, handler: KindHandler<D>): RequestKind<D>;
  /** `auth register --auth-id <id> --user <name>`: a login or a debug node becomes a node. */
  register(id: string, userId: number): Promise<NodeRecord>;
  /** `auth approve`: an SSH check, or the re-authentication of a known machine. */
  approve(id: string): Promise<NodeRecord | null>;
  /** `auth reject`, any kind. */
  reject(id: string, reason?: string): Promise<void>;
  /** The live requests, oldest first. */
  list(): AuthRequestInfo[];
}

export interface AuthRequestRegistryOptions {
  /** How long a request waits (headscale: 15 minutes). */
  ttlMs?: number;
  /** When full, the oldest request makes room for a new one. */
  maxEntries?: number;
  /** Epoch milliseconds. */
  now?: () => number;
  log?: Logger;
}

interface Entry extends AuthRequest<unknown> {
  status: AuthRequest<unknown>["status"];
  verdict: AuthVerdict | null;
  readonly handler: KindHandler<unknown>;
  readonly waiters: Set<(outcome: WaitOutcome) => void>;
}

/** setTimeout's longest delay; a longer one would fire at once. */
const MAX_DELAY_MS = 2 ** 31 - 1;

export class AuthRequestRegistry implements AuthRequests {
  readonly #entries: ExpiringMap<Entry>;
  readonly #now: () => number;
  readonly #ttlMs: number;
  readonly #log: Logger | undefined;

  constructor(opts: AuthRequestRegistryOptions = {}) {
    this.#now = opts.now ?? Date.now;
    this.#ttlMs = opts.ttlMs ?? 15 * 60_000;
    this.#log = opts.log;
    this.#entries = new ExpiringMap({
      ttlMs: this.#ttlMs,
      maxEntries: opts.maxEntries ?? 10_000,
      now: this.#now,
      // Expired, or pushed out by newer requests: whoever waits is told.
      onDrop: (_id, e) => wake(e, "expired"),
    });
  }

  kind<D>(kind: AuthRequestKind, handler: KindHandler<D>): RequestKind<D> {
    const ofKind = (e: Entry | undefined) => e?.kind === kind ? e as AuthRequest<D> : undefined;
    return {
      open: (data, opts) => this.#open(kind, handler as KindHandler<unknown>, data, opts?.id),
      get: (id) => ofKind(this.#entries.get(id)),
      all: () => this.#entries.values().filter((e) => e.kind === kind) as AuthRequest<D>[],
      wait: (request, opts) => this.#wait(request as Entry, opts ?? {}),
      remove: (request) => this.#remove(request as Entry),
    };
  }

  #open<D>(kind: AuthRequestKind, handler: KindHandler<unknown>, data: D, id?: string) {
    if (id === undefined) {
      do id = newAuthId(); while (this.#entries.has(id));
    } else {
      const taken = this.#entries.get(id);
      if (taken && taken.kind !== kind) {
        throw new AlreadyExistsError(`auth id ${id} is taken by a pending ${taken.handler.noun}`);
      }
      // Replaced (as headscale's cache does): whoever waited on the old one starts over.
      if (taken) this.#remove(taken, "expired");
    }
    const createdAt = this.#now();
    const entry: Entry = {
      id,
      kind,
      data,
      createdAt,
      expiresAt: createdAt + this.#ttlMs,
      status: "pending",
      verdict: null,
      handler,
      waiters: new Set(),
    };
    this.#entries.set(id, entry);
    return entry as AuthRequest<D>;
  }

  register(id: string, userId: number): Promise<NodeRecord> {
    return this.#decide(id, (e) => e.handler.register(e, userId)) as Promise<NodeRecord>;
  }

  approve(id: string): Promise<NodeRecord | null> {
    return this.#decide(id, (e) => e.handler.approve(e));
  }

  // deno-lint-ignore require-await
  async reject(id: string, reason?: string): Promise<void> {
    const e = this.#pending(id);
    this.#settle(e, {
      kind: "rejected",
      reason: reason ?? `the ${e.handler.noun} was rejected by an administrator`,
    });
    this.#log?.info(`${e.handler.noun} rejected`, { auth_id: id, kind: e.kind });
  }

  list(): AuthRequestInfo[] {
    return this.#entries.values().map((e) => ({
      id: e.id,
      kind: e.kind,
      status: e.status === "deciding" ? "pending" : e.status,
      createdAt: new Date(e.createdAt),
      expiresAt: new Date(e.expiresAt),
      ...e.handler.describe(e.data),
    }));
  }

  /** Shutdown: every waiting client is told ("closed"), every request forgotten. */
  close(): void {
    for (const e of this.#entries.values()) wake(e, "closed");
    this.#entries.clear();
  }

  /** A request an admin may still decide, or NotFoundError. */
  #pending(id: string): Entry {
    const e = this.#entries.get(id);
    // The message interactive logins always gave: most ids an admin types are theirs.
    if (!e) throw new NotFoundError(`no pending login with auth id ${id} (it may have expired)`);
    if (e.status !== "pending") {
      throw new NotFoundError(`the ${e.handler.noun} with auth id ${id} was already decided`);
    }
    return e;
  }

  async #decide(
    id: string,
    act: (e: Entry) => Promise<NodeRecord | null>,
  ): Promise<NodeRecord | null> {
    const e = this.#pending(id);
    e.status = "deciding";
    let node: NodeRecord | null;
    try {
      node = await act(e);
    } catch (err) {
      e.status = "pending";
      throw err;
    }
    this.#settle(e, { kind: "approved", node });
    this.#log?.info(`${e.handler.noun} approved`, {
      auth_id: id,
      kind: e.kind,
      ...(node ? { node: node.id } : {}),
    });
    return node;
  }

  #settle(e: Entry, verdict: AuthVerdict): void {
    e.status = verdict.kind;
    e.verdict = verdict;
    wake(e, verdict);
    if (!e.handler.keepsDecision) this.#remove(e);
  }

  #wait(e: Entry, opts: WaitOptions): Promise<WaitOutcome> {
    if (e.verdict) return Promise.resolve(e.verdict);
    if (this.#entries.get(e.id) !== e) return Promise.resolve("expired");
    if (opts.signal?.aborted) return Promise.resolve("aborted");
    return new Promise((resolve) => {
      const done = (outcome: WaitOutcome) => {
        clearTimeout(timer);
        opts.signal?.removeEventListener("abort", onAbort);
        e.waiters.delete(done);
        resolve(outcome);
      };
      const onAbort = () => done("aborted");
      // The request's expiry ends the wait on time: nothing else may come along to sweep.
      const expiresIn = Math.max(0, e.expiresAt - this.#now());
      const byExpiry = opts.timeoutMs === undefined || expiresIn <= opts.timeoutMs;
      const timer = setTimeout(
        () => byExpiry ? this.#remove(e, "expired") : done("timeout"),
        Math.min(byExpiry ? expiresIn : opts.timeoutMs!, MAX_DELAY_MS),
      );
      e.waiters.add(done);
      opts.signal?.addEventListener("abort", onAbort, { once: true });
    });
  }

  /** Drops `e` if it is still the request under its id; its waiters learn `outcome`. */
  #remove(e: Entry, outcome?: WaitOutcome): void {
    if (this.#entries.get(e.id) === e) this.#entries.delete(e.id);
    if (outcome) wake(e, outcome);
  }
}

function wake(e: Entry, outcome: WaitOutcome): void {
  for (const w of [...e.waiters]) w(outcome);
  e.waiters.clear();
}
