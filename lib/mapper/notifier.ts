/**
 * The session registry and change fan-out. server.ts hands it every batch of State events with
 * the nodes the policy says are affected (`apply`); they are collected for a short window
 * (tuning.batch_change_delay, batch.ts) and then turned into one delta per session:
 *
 * - node added/updated/expired → PeersChanged (full node) to the nodes that see it, Node to
 *   itself; node patched → PeersChangedPatch to the nodes that see it;
 * - node removed → PeersRemoved; user renamed → UserProfiles; DERP/DNS → DERPMap/DNSConfig;
 * - policy changed → each session gets only what changed for it (PolicySync): PeersRemoved for
 *   peers it no longer sees, PeersChanged (full nodes, with their users' profiles) for new ones,
 *   PacketFilters when its filter changed, SSHPolicy, and its Node when its capabilities
 *   changed; nothing when nothing changed for it. Affected nodes get the same for them. A full
 *   map is sent instead when that is smaller.
 *
 * Cost is proportional to the affected receivers: each changed node's fragment is built once,
 * receivers are grouped by the exact set of fragments they get (fanout.ts), and each group's
 * message is assembled (delta.ts) and compressed once, its bytes shared by all its sessions.
 */
import process from "node:process";
import type { Logger } from "../log/log.ts";
import type { NodeRecord } from "../store/types.ts";
import type { Change } from "../state/events.ts";
import { addChanges, type Batch, emptyBatch } from "./batch.ts";
import { deltaJson, type Everyone, type Item, withoutShared } from "./delta.ts";
import { createFanout, type Group } from "./fanout.ts";
import { SharedMessage } from "./framing.ts";
import { toJson } from "../tailcfg/json.ts";
import { type Mapper, peerChangeJson } from "./mapper.ts";
import { type PolicyDelta, PolicySync } from "./policy_sync.ts";

/** One open map stream, as the notifier sees it. */
export interface MapSink {
  readonly nodeId: number;
  /**
   * Queue a message on the stream (the sink frames and compresses via SharedMessage). `now`
   * (performance.now()) is the caller's clock reading when it sends to many sinks in one turn.
   */
  send(msg: SharedMessage, now?: number): void;
  /** Close the stream (replaced by a newer one, node deleted, or shutdown). */
  close(reason: string): void;
  /**
   * The node was deleted: send `farewell` (its own node with a dead key, so the client asks for
   * a login) and close. Optional; without it the stream is just closed.
   */
  deleted?(farewell: SharedMessage): void;
}

export interface NotifierDeps {
  state: {
    listNodes(): NodeRecord[];
    getNode(id: number): NodeRecord | undefined;
  };
  mapper: Mapper;
  log: Logger;
  /** How long changes are collected before deltas go out (with `adaptive`: at most). */
  batchDelayMs: number;
  /**
   * Send at once when idle, coalesce only under load: the pause between flushes grows with how
   * busy the process is with other work (its CPU share between flushes: none below LOAD_LOW, the
   * whole batchDelayMs from LOAD_HIGH on: registrations and full maps of a join or restart storm)
   * and is long enough after what recent flushes took that the process stays within CPU_BUDGET
   * of the core (flushPause: in churn the fan-out gets what other work leaves of it). Under load
   * the window stretches with the number of sessions
   * (SESSIONS_PER_WINDOW), and status patches alone may wait up to STATUS_WINDOWS windows.
   * A lone change at idle goes out in the next task. Without it
   * every batch waits batchDelayMs (tests that flush by hand rely on that).
   */
  adaptive?: boolean;
  /** The process's CPU time in µs (process.cpuUsage); tests simulate load with it. */
  cpuMicros?: () => number;
  /**
   * Runs a flush's sends with the sockets' writes deferred (lib/net/write_batch.ts): sessions are
   * framed and sealed, then written, 128 at a time.
   */
  writeBatch?: { run<T>(fn: () => T): T };
  /** SESSIONS_PER_WINDOW, for tests with a few sessions. */
  sessionsPerWindow?: number;
  now?: () => Date;
}

/**
 * With `adaptive`, the share of one core the process should stay within while changes keep
 * coming (churn): the pause after a flush leaves room for the other work measured between
 * flushes (flushPause). Under 50 % with a margin for what the estimate misses: at 10,000 nodes
 * in churn the process measured 46-47 % (44 % at 0.45, for a churn p50 7 % longer).
 */
export const CPU_BUDGET = 0.48;
/**
 * With `adaptive` and the process busy with other work, the window stretches by one more window
 * per this many sessions past the first ones. Each flush writes once to every session it
 * concerns (~15 µs each, mostly the kernel's), so with a fixed window the bigger the tailnet the
 * more of the core goes to flushing: flushes ~0.9 s apart in a 10,000-node join storm were 2
 * million writes, a third of its CPU. (A pause proportional to what flushes cost instead feeds on
 * itself: a longer pause, a bigger batch, a costlier flush, a longer pause.)
 */
const SESSIONS_PER_WINDOW = 4_000;
/** With `adaptive`, CPU shares of one core between which the pause grows from 0 to the window. */
const LOAD_LOW = 0.2;
const LOAD_HIGH = 0.6;
/**
 * With `adaptive`, the other work's CPU share is averaged over about this long: a GC pause or a
 * burst of requests between two close flushes must not stretch the next pause to the window.
 */
const LOAD_SMOOTHING_MS = 2_000;

/**
 * With `adaptive`, a batch of status patches only (online, last seen, capability version:
 * isStatusPatch) may wait up to this many windows under load. In a restart storm every node
 * comes online, and each flush of those writes to every session.
 */
const STATUS_WINDOWS = 4;

/**
 * The pause after flushes that cost `flushCostMs` when other work takes `load` of the core
 * between them: the shortest that keeps the whole (flushCost + load·pause) / (flushCost + pause)
 * within CPU_BUDGET (so never under (1 - CPU_BUDGET) / CPU_BUDGET ≈ 1.1 flush costs), at most
 * `window`. A shorter pause is a shorter wait: in churn a change waits about half a flush
 * interval, then a flush.
 */
export function flushPause(flushCostMs: number, load: number, window: number): number {
  const room = CPU_BUDGET - load;
  if (room <= 0) return window;
  return Math.min(window, flushCostMs * (1 - CPU_BUDGET) / room);
}

function cpuMicros(): number {
  const { user, system } = process.cpuUsage();
  return user + system;
}

export class Notifier {
  private readonly sessions = new Map<number, MapSink>();
  private batch = emptyBatch();
  private timer: ReturnType<typeof setTimeout> | ReturnType<typeof setImmediate> | undefined;
  /** The pending flush was set with setImmediate (no wait), not setTimeout. */
  private timerImmediate = false;
  /** Whether the pending timer was set for a batch with more than status patches. */
  private timerUrgent = true;
  /** What each session was last sent of the policy's outputs. */
  readonly policySync: PolicySync;
  /** Totals since start (read by the metrics endpoint); a session gets a delta or a full map. */
  readonly stats = {
    batches: 0,
    deltasSent: 0,
    fullMapsSent: 0,
    flushSeconds: 0,
    lastFlushSeconds: 0,
  };
  private closed = false;
  /** When the last flush ended (performance.now()), and what recent flushes cost (ms, smoothed). */
  private lastFlushEnd = -Infinity;
  private flushCostMs = 0;
  /** The process's CPU time (µs) at the last flush's end; other work's share of one core. */
  private lastFlushCpu = 0;
  private load = 0;

  private readonly cpuMicros: () => number;

  constructor(private readonly deps: NotifierDeps) {
    this.policySync = new PolicySync(deps.mapper);
    this.cpuMicros = deps.cpuMicros ?? cpuMicros;
  }

  get sessionCount(): number {
    return this.sessions.size;
  }

  hasSession(nodeId: number): boolean {
    return this.sessions.has(nodeId);
  }

  /**
   * Adds a stream; a previous stream of the same node is closed (a new poll replaces it). The
   * caller sends it a full map built now (its policy outputs are remembered as sent).
   */
  register(sink: MapSink): void {
    const previous = this.sessions.get(sink.nodeId);
    this.sessions.set(sink.nodeId, sink);
    this.policySync.remember(sink.nodeId);
    if (previous && previous !== sink) previous.close("replaced by a newer map stream");
  }

  /**
   * Queues a message for one node's current stream outside the change fan-out (a PingRequest).
   * False when the node has no stream.
   */
  sendTo(nodeId: number, msg: SharedMessage): boolean {
    const sink = this.sessions.get(nodeId);
    if (!sink || this.closed) return false;
    sink.send(msg);
    return true;
  }

  /** Removes a stream if it is still the node's current one. */
  unregister(sink: MapSink): void {
    if (this.sessions.get(sink.nodeId) === sink) {
      this.sessions.delete(sink.nodeId);
      this.policySync.forget(sink.nodeId);
    }
  }

  /**
   * Takes one batch of State events (after the mapper dropped its caches for them) and the nodes
   * the policy says they affect; deltas go out when the batching window closes. A deleted node's
   * stream gets its farewell at once.
   */
  apply(changes: readonly Change[], affected: Iterable<number> = []): void {
    if (this.closed) return;
    addChanges(this.batch, changes);
    for (const c of changes) {
      if (c.kind !== "node-removed") continue;
      const sink = this.sessions.get(c.nodeId);
      if (!sink) continue;
      this.sessions.delete(c.nodeId);
      this.policySync.forget(c.nodeId);
      if (sink.deleted && c.node) sink.deleted(this.deps.mapper.farewellMessage(c.node));
      else sink.close("node deleted");
    }
    for (const id of affected) {
      this.batch.resync.add(id);
      this.batch.urgent = true;
    }
    this.scheduleFlush();
  }

  private scheduleFlush(): void {
    if (this.closed) return;
    if (this.timer !== undefined) {
      // A wait that was long because the batch held only status patches ends with the first
      // change of any other kind.
      if (this.timerUrgent || !this.batch.urgent) return;
      this.cancelTimer();
    }
    let delay = this.deps.batchDelayMs;
    this.timerUrgent = true;
    if (this.deps.adaptive) {
      const busy = Math.min(1, Math.max(0, (this.load - LOAD_LOW) / (LOAD_HIGH - LOAD_LOW)));
      const perWindow = this.deps.sessionsPerWindow ?? SESSIONS_PER_WINDOW;
      const stretch = 1 + busy * Math.max(0, this.sessions.size / perWindow - 1);
      const window = this.deps.batchDelayMs * stretch *
        (this.batch.urgent ? 1 : STATUS_WINDOWS);
      const gap = Math.max(busy * window, flushPause(this.flushCostMs, this.load, window));
      delay = Math.max(0, gap - (performance.now() - this.lastFlushEnd));
      this.timerUrgent = this.batch.urgent;
    }
    // Even at 0 the changes of the current task (one registration's events) go out together:
    // setImmediate runs after the I/O callbacks of this turn, and without a timer's 1 ms floor,
    // which a lone change at idle would wait for nothing.
    const run = () => {
      this.timer = undefined;
      this.flush();
    };
    this.timerImmediate = delay <= 0;
    this.timer = this.timerImmediate ? setImmediate(run) : setTimeout(run, delay);
  }

  private cancelTimer(): void {
    if (this.timer === undefined) return;
    if (this.timerImmediate) clearImmediate(this.timer as ReturnType<typeof setImmediate>);
    else clearTimeout(this.timer as ReturnType<typeof setTimeout>);
    this.timer = undefined;
  }

  /** Sends what the current batch holds now (tests, shutdown). */
  flush(): void {
    this.cancelTimer();
    const b = this.batch;
    this.batch = emptyBatch();
    const started = performance.now();
    const wall = started - this.lastFlushEnd;
    if (this.deps.adaptive && Number.isFinite(wall) && wall > 0) {
      // What the process did between flushes (registrations, full maps, requests), apart from
      // the flushes themselves: a busy server batches more, a flush's own cost does not count.
      const share = (this.cpuMicros() - this.lastFlushCpu) / 1000 / wall;
      const weight = 1 - Math.exp(-wall / LOAD_SMOOTHING_MS);
      this.load += (Math.min(1, share) - this.load) * weight;
    }
    try {
      if (this.deps.writeBatch) this.deps.writeBatch.run(() => this.sendDeltas(b));
      else this.sendDeltas(b);
    } catch (e) {
      this.deps.log.error("sending map updates failed", { error: e });
    }
    // The sends frame, seal and write in this call (lib/h2 writes in the writer's turn, a write
    // batch when this returns), so this is the whole cost of the flush.
    const ended = performance.now();
    const took = ended - started;
    this.stats.flushSeconds += took / 1000;
    this.stats.lastFlushSeconds = took / 1000;
    this.flushCostMs = (this.flushCostMs + took) / 2;
    this.lastFlushEnd = ended;
    if (this.deps.adaptive) this.lastFlushCpu = this.cpuMicros();
  }

  /** A full map on a running stream (its policy outputs were already remembered). */
  private sendFullMap(sink: MapSink): void {
    const msgs = this.deps.mapper.fullMapMessages(sink.nodeId, { resync: true });
    for (const msg of msgs ?? []) sink.send(msg);
  }

  /**
   * The nodes whose own attributes changed in this batch (only pairs involving them can have
   * changed visibility), or null when anything may have (a new policy, or a resync with no
   * node change behind it).
   */
  private changedNodes(b: Batch): Set<number> | null {
    if (b.policy) return null;
    const changed = new Set<number>([...b.full, ...b.removed]);
    if (b.users.size > 0) {
      for (const n of this.deps.state.listNodes()) {
        if (n.userId !== null && b.users.has(n.userId)) changed.add(n.id);
      }
    }
    return changed.size > 0 ? changed : null;
  }

  private sendDeltas(b: Batch): void {
    const { mapper } = this.deps;
    const items: Item[] = [];
    const fanout = createFanout(mapper.policy, (id) => this.sessions.has(id));

    // Removed nodes drop out of everything else; vanished nodes count as removed.
    const full = [...b.full].filter((id) => !b.removed.has(id)).sort((a, z) => a - z);
    for (const id of full) {
      const json = mapper.peerJsonOf(id);
      if (json === null) {
        b.removed.add(id);
        continue;
      }
      const index = items.push({ json, nodeId: id, kind: "full", user: mapper.wireUserOf(id) }) -
        1;
      fanout.add(index, id);
    }
    const patched = [...b.patches.keys()]
      .filter((id) => !b.full.has(id) && !b.removed.has(id))
      .sort((a, z) => a - z);
    for (const id of patched) {
      const json = peerChangeJson(id, b.patches.get(id)!);
      const index = items.push({ json, nodeId: id, kind: "patch", user: null }) - 1;
      fanout.add(index, id);
    }
    // A renamed user's profile goes to the nodes that see one of the user's nodes.
    for (const userId of [...b.users].sort((a, z) => a - z)) {
      const json = mapper.profileJsonOf(userId);
      if (json === null) continue;
      const index = items.push({ json, nodeId: -1, kind: "profile", user: userId }) - 1;
      const owned = this.deps.state.listNodes().filter((n) => n.userId === userId);
      fanout.addToViewersOf(index, owned.map((n) => n.id));
    }

    const removed = [...b.removed].sort((a, z) => a - z);
    const log = this.deps.log;
    const trace = log.enabled("trace");
    let sent = 0;
    let messages = 0;
    let policyDeltas = 0;
    let fullMaps = 0;
    const everyone: Everyone = { removed, derpJson: b.derp ? mapper.derpMapJson() : null };
    const hasEveryone = removed.length > 0 || b.derp;

    // Policy outputs: every session after a new policy, else the sessions asked for.
    const round = this.policySync.round(this.changedNodes(b));
    const comparesAll = b.policy;
    const tracksPeers = !mapper.policy.seesEveryone?.();
    /** Identical personal messages (e.g. the same filter change) are built once. */
    const personal = new Map<string, SharedMessage>();
    const fullIdsOf = (group: Group): ReadonlySet<number> =>
      group.fullIds ??= new Set(
        group.items().filter((i) => items[i].kind === "full").map((i) => items[i].nodeId),
      );

    // One clock reading for the whole fan-out: the sinks only move their keep-alive deadline.
    const now = performance.now();
    try {
      for (const sink of [...this.sessions.values()]) {
        const id = sink.nodeId;
        const group = fanout.groupOf(id);
        let policy: PolicyDelta | null = null;
        if (comparesAll || b.resync.has(id)) {
          policy = round.diff(id);
          if (policy?.full) {
            this.sendFullMap(sink);
            fullMaps++;
            continue;
          }
          if (policy) policy = withoutShared(policy, fullIdsOf(group), b.removed);
          if (policy) policyDeltas++;
        } else if (tracksPeers && !group.empty) {
          const fullIds = fullIdsOf(group);
          if (fullIds.size > 0) round.noteReceived(id, [...fullIds]);
        }
        const wantsSelf = b.self.has(id) || (policy?.selfChanged ?? false);
        const node = wantsSelf || b.dns ? this.deps.state.getNode(id) : undefined;
        const selfJson = wantsSelf && node ? toJson(mapper.selfNode(node)) : null;
        const dnsJson = b.dns && node ? mapper.dnsConfigJsonFor(node) : null;
        if (group.empty && selfJson === null && dnsJson === null && policy === null) {
          if (!hasEveryone) continue;
        }
        const own = selfJson !== null || policy !== null ||
          (dnsJson !== null && mapper.dnsIsPerNode());
        let msg = own ? undefined : group.message;
        if (!msg) {
          const json = deltaJson(mapper, group.items().map((i) => items[i]), everyone, {
            selfJson,
            dnsJson,
            policy,
          });
          if (own) {
            msg = personal.get(json);
            if (!msg) {
              msg = new SharedMessage(json);
              if (json.length <= 65536) personal.set(json, msg);
              messages++;
            }
          } else {
            msg = new SharedMessage(json);
            group.message = msg;
            messages++;
          }
        }
        if (trace) log.trace("delta", { node: id, json: msg.json.slice(0, 2000) });
        sink.send(msg, now);
        sent++;
      }
    } finally {
      round.end();
    }
    this.stats.batches++;
    this.stats.deltasSent += sent;
    this.stats.fullMapsSent += fullMaps;
    log.debug("deltas sent", {
      full: full.length,
      patched: patched.length,
      removed: removed.length,
      sessions: sent,
      messages,
      policyDeltas,
      fullMaps,
    });
  }

  /** Stops batching and closes every stream. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.cancelTimer();
    for (const sink of [...this.sessions.values()]) sink.close("server shutting down");
    this.sessions.clear();
  }
}
