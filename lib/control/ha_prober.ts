/**
 * HA subnet router health (headscale v0.29's node.routes.ha): every probe_interval, each online
 * router that shares a prefix with another one gets a PingRequest on its map stream; the client
 * answers with `HEAD <server_url>/machine/ping-response?id=<id>` over its ordinary HTTP client.
 * One that does not answer within probe_timeout is unhealthy and loses its primary routes, even
 * while its map stream looks alive (a hung process, a cut path that keeps the TCP connection);
 * one that answers again, or reconnects, is healthy but does not take its routes back.
 *
 * As headscale: a cycle's results are applied at once (one election); a timeout is dropped when
 * the router went offline or reconnected meanwhile, or when its session is younger than one
 * cycle (a fresh session may not have applied its netmap yet); a cycle with such a deferral
 * applies nothing. Ids are 16 random letters and digits, unguessable: the only authentication
 * of the HEAD request.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Logger } from "../log/log.ts";
import { SharedMessage } from "../mapper/framing.ts";
import type { MapResponse } from "../tailcfg/types.ts";
import { toJson } from "../tailcfg/json.ts";

const ID_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789";

/** Pings waiting for their HEAD request, by id. */
export class PingTracker {
  private readonly pending = new Map<string, (answered: boolean) => void>();

  /** A new ping id and a promise: true when answered, false when cancelled. */
  register(): { id: string; answered: Promise<boolean> } {
    const bytes = crypto.getRandomValues(new Uint8Array(16));
    const id = [...bytes].map((b) => ID_ALPHABET[b % ID_ALPHABET.length]).join("");
    const answered = new Promise<boolean>((resolve) => this.pending.set(id, resolve));
    return { id, answered };
  }

  /** The client answered; false for an unknown or finished id. */
  complete(id: string): boolean {
    const resolve = this.pending.get(id);
    if (!resolve) return false;
    this.pending.delete(id);
    resolve(true);
    return true;
  }

  cancel(id: string): void {
    const resolve = this.pending.get(id);
    this.pending.delete(id);
    resolve?.(false);
  }

  get size(): number {
    return this.pending.size;
  }

  close(): void {
    for (const id of [...this.pending.keys()]) this.cancel(id);
  }
}

export interface HaProberDeps {
  state: {
    haRouters(): number[];
    isOnline(id: number): boolean;
    sessionEpoch(id: number): number;
    setRouterHealth(results: ReadonlyMap<number, boolean>): boolean;
  };
  /** Queues a message on the node's map stream; false when it has none. */
  send(nodeId: number, msg: SharedMessage): boolean;
  /** server_url: the ping's answer goes to `<serverUrl>/machine/ping-response?id=…`. */
  serverUrl: string;
  intervalMs: number;
  timeoutMs: number;
  log: Logger;
}

export class HaProber {
  readonly pings = new PingTracker();
  /** The session each router had at the previous cycle: a timeout counts only if unchanged. */
  private readonly stableSession = new Map<number, number>();
  private timer: ReturnType<typeof setInterval> | undefined;
  private running: Promise<void> | null = null;
  private closed = false;

  constructor(private readonly deps: HaProberDeps) {}

  start(): void {
    if (this.deps.intervalMs <= 0 || this.timer !== undefined) return;
    this.timer = setInterval(() => {
      // A cycle still waiting on its timeouts is not overlapped.
      this.running ??= this.probeOnce().finally(() => this.running = null);
    }, this.deps.intervalMs);
  }

  /** One probe cycle; resolves when its results are applied. */
  async probeOnce(): Promise<void> {
    const { state, log } = this.deps;
    const routers = state.haRouters();
    for (const id of [...this.stableSession.keys()]) {
      if (!routers.includes(id)) this.stableSession.delete(id);
    }
    if (routers.length === 0) return;
    let deferred = false;
    const results = new Map<number, boolean>();
    await Promise.all(routers.map(async (id) => {
      const epoch = state.sessionEpoch(id);
      const stable = this.stableSession.get(id) === epoch;
      this.stableSession.set(id, epoch);
      const { id: pingId, answered } = this.pings.register();
      const request: MapResponse = {
        PingRequest: { URL: `${this.deps.serverUrl}/machine/ping-response?id=${pingId}` },
      };
      if (!this.deps.send(id, new SharedMessage(toJson(request)))) {
        this.pings.cancel(pingId);
        return; // No stream: offline, nothing to decide.
      }
      const timer = setTimeout(() => this.pings.cancel(pingId), this.deps.timeoutMs);
      const ok = await answered;
      clearTimeout(timer);
      if (this.closed) return;
      if (ok) {
        results.set(id, true);
        return;
      }
      if (!state.isOnline(id)) return;
      if (state.sessionEpoch(id) !== epoch || !stable) {
        log.debug("HA probe timed out on a fresh session; deciding next cycle", { node: id });
        deferred = true;
        return;
      }
      log.warn("HA probe: router did not answer", { node: id, timeoutMs: this.deps.timeoutMs });
      results.set(id, false);
    }));
    if (this.closed || deferred) return;
    if (state.setRouterHealth(results)) {
      log.info("HA probe: router health changed, primary routes re-elected", {
        healthy: [...results].filter(([, h]) => h).map(([id]) => id),
        unhealthy: [...results].filter(([, h]) => !h).map(([id]) => id),
      });
    }
  }

  /** `HEAD /machine/ping-response?id=<id>` on the main listener. */
  pingResponse = (req: IncomingMessage, res: ServerResponse): void => {
    if (req.method !== "HEAD") {
      res.writeHead(405).end();
      return;
    }
    const id = new URL(req.url ?? "/", "http://x").searchParams.get("id");
    res.writeHead(!id ? 400 : this.pings.complete(id) ? 200 : 404).end();
  };

  close(): void {
    this.closed = true;
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
    this.pings.close();
  }
}
