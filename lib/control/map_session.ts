/**
 * `POST /machine/map`. Three shapes:
 * - Stream:true — the long poll: a full map first, then deltas from the notifier and
 *   `{"KeepAlive":true}` every 50 s + jitter. The node is online while the stream is open; a new
 *   stream from the same node replaces the old one.
 * - Stream:false, OmitPeers:true — a "lite" update: store endpoints/Hostinfo/disco key, 200, end.
 * - Stream:false, OmitPeers:false — one full map, then end.
 * Every request carries Hostinfo/Endpoints/DiscoKey; they are applied before the map is built.
 */
import type { H2Response } from "../h2/server.ts";
import type { Logger } from "../log/log.ts";
import type { State } from "../state/state.ts";
import type { NodeReport } from "../state/state.ts";
import type { MapRequest } from "../tailcfg/types.ts";
import { KEEP_ALIVE, SharedMessage } from "../mapper/framing.ts";
import type { Mapper } from "../mapper/mapper.ts";
import type { MapResponseDump } from "../mapper/dump.ts";
import type { MapSink, Notifier } from "../mapper/notifier.ts";
import type { EphemeralGc } from "../state/ephemeral_gc.ts";
import { HttpError } from "./http_util.ts";
import { sanitizeEndpoints, sanitizeHostinfo, usableKey } from "./sanitize.ts";
import type { MachineKey } from "../tailcfg/keys.ts";
import type { NodeRecord } from "../store/types.ts";
import type { SetupGate, SetupTicket } from "./setup_gate.ts";

export interface MapServiceDeps {
  state: State;
  mapper: Mapper;
  notifier: Notifier;
  ephemeral: EphemeralGc;
  log: Logger;
  keepAliveMs?: number;
  keepAliveJitterMs?: number;
  /** A stream with more bytes queued than this is closed (the client reconnects). */
  maxBufferedBytes?: number;
  /** Also write every map response sent to disk (HEADSCALE_DEBUG_DUMP_MAPRESPONSE_PATH). */
  dump?: MapResponseDump;
  /** Full maps answered at once (tuning.max_connecting_nodes); without it, no limit. */
  gate?: SetupGate;
}

/** One open long poll. */
class MapStream implements MapSink {
  private closed = false;
  private aborted = false;
  private keepAliveTimer: ReturnType<typeof setTimeout> | undefined;
  /** When the next keep-alive is due (performance.now() time). */
  private keepAliveDue = 0;
  /** Quiet time before a keep-alive: the interval plus this stream's own jitter, so streams
   * that got the same message do not all send keep-alives together. */
  private readonly keepAliveAfter: number;
  /** Called once, when the first message (the full map) has been handed to the transport. */
  private firstWritten: (() => void) | undefined;

  constructor(
    readonly nodeId: number,
    private readonly res: H2Response,
    private readonly zstd: boolean,
    private readonly opts: {
      keepAliveMs: number;
      jitterMs: number;
      maxBufferedBytes: number;
      dump?: MapResponseDump;
    },
    private readonly log: Logger,
    firstWritten?: () => void,
  ) {
    this.firstWritten = firstWritten;
    this.keepAliveAfter = opts.keepAliveMs + Math.floor(Math.random() * opts.jitterMs);
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /**
   * Queues the message's frame — shared between sessions and never copied here; the HTTP/2
   * connection frames and seals it as flow control and the socket allow.
   */
  send(msg: SharedMessage, now = performance.now()): void {
    if (this.closed || this.aborted || this.res.closed) return;
    // Per message and per session: the stream's own queue, not the socket's (at most ~256 KB).
    if (this.res.queuedBytes > this.opts.maxBufferedBytes) {
      this.log.warn("map stream too slow, closing it", { node: this.nodeId });
      this.aborted = true;
      this.close("client too slow");
      return;
    }
    if (this.opts.dump && msg !== KEEP_ALIVE) this.opts.dump.write(this.nodeId, msg.json);
    const first = this.firstWritten;
    this.firstWritten = undefined;
    this.res.write(msg.framePieces(this.zstd), first);
    this.armKeepAlive(now);
  }

  /**
   * A keep-alive goes out after keepAliveMs (plus jitter) without any message. Sending only moves
   * the deadline; the one timer re-arms itself when it fires early, so a busy stream does not pay
   * for a new timer on every message (at 10,000 streams that was 7 % of a fan-out's CPU).
   */
  armKeepAlive(now = performance.now()): void {
    if (this.closed) return;
    this.keepAliveDue = now + this.keepAliveAfter;
    if (this.keepAliveTimer === undefined) this.startKeepAliveTimer();
  }

  private startKeepAliveTimer(): void {
    this.keepAliveTimer = setTimeout(() => {
      this.keepAliveTimer = undefined;
      if (this.closed) return;
      if (performance.now() >= this.keepAliveDue) this.send(KEEP_ALIVE);
      else this.startKeepAliveTimer();
    }, Math.max(0, this.keepAliveDue - performance.now()));
  }

  /** The node was deleted: its last message (its own node with a dead key), then the end. */
  deleted(farewell: SharedMessage): void {
    this.send(farewell);
    this.close("node deleted");
  }

  /** The client reset the stream: nothing more can be written. */
  abort(): void {
    this.aborted = true;
  }

  /** Ends the stream once what was sent so far is written (at once when aborted). */
  close(reason: string): void {
    if (this.closed) return;
    this.closed = true;
    if (this.keepAliveTimer !== undefined) clearTimeout(this.keepAliveTimer);
    this.keepAliveTimer = undefined;
    this.log.debug("map stream closed", { node: this.nodeId, reason });
    const first = this.firstWritten;
    this.firstWritten = undefined;
    first?.();
    if (this.aborted) this.res.destroy();
    else this.res.end();
  }
}

/**
 * A map request waiting for its turn at the gate: a keep-alive every keepAliveMs until then.
 * Its own object, so the stream's close listener (alive as long as the stream) holds this and
 * the ticket, not the request-handling scope; the gate drops the request's callback once it ran
 * (~1 KB a stream in all).
 */
class GateWait {
  /** Kept after admission: cancelling it gives back a slot the stream still holds. */
  ticket: SetupTicket | null = null;
  private timer: ReturnType<typeof setTimeout> | null = null;

  constructor(
    private readonly res: H2Response,
    private readonly zstd: boolean,
    private readonly keepAliveMs: number,
    private readonly waiting: Set<H2Response>,
  ) {
    waiting.add(res);
    this.arm();
    // Made here, not where the request is handled: a closure there would keep its whole scope.
    res.onClose(() => {
      this.admitted();
      this.ticket?.cancel();
    });
  }

  private arm(): void {
    this.timer = setTimeout(() => {
      this.res.write(KEEP_ALIVE.frame(this.zstd));
      this.arm();
    }, this.keepAliveMs);
  }

  /** Its turn came (or it went away): no more keep-alives from here. */
  admitted(): void {
    this.waiting.delete(this.res);
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
  }
}

export class MapService {
  /** Totals since start (read by the metrics endpoint). */
  readonly stats = { streamsOpened: 0, streamsEnded: 0, fullMapsSent: 0, liteUpdates: 0 };
  private readonly keepAliveMs: number;
  private readonly jitterMs: number;
  private readonly maxBufferedBytes: number;
  /** Requests waiting for the gate, their headers sent. */
  private readonly waiting = new Set<H2Response>();

  constructor(private readonly deps: MapServiceDeps) {
    this.keepAliveMs = deps.keepAliveMs ?? 50_000;
    this.jitterMs = deps.keepAliveJitterMs ?? 9_000;
    this.maxBufferedBytes = deps.maxBufferedBytes ?? 64 << 20;
  }

  /**
   * Serves one map request from the Noise peer `machineKey`. Throws HttpError before replying.
   * With a gate, a request for a full map (a stream, or a one-shot map) waits for its turn with
   * its headers sent and a keep-alive every keepAliveMs; a lite update never waits.
   */
  handle(req: MapRequest, machineKey: MachineKey, res: H2Response): void {
    const node = this.checkNode(req, machineKey);
    const { gate } = this.deps;
    if ((!req.Stream && req.OmitPeers) || !gate) return this.serve(req, node.id, res);
    res.writeHead(200, { "content-type": "application/octet-stream" });
    const wait = new GateWait(res, req.Compress === "zstd", this.keepAliveMs, this.waiting);
    wait.ticket = gate.admit((done) => {
      wait.admitted();
      if (res.closed) return done();
      try {
        this.serve(req, node.id, res, done);
      } catch (e) {
        // The headers are out: the client learns of it as the end of the stream and asks again.
        done();
        this.deps.log.debug("map request failed after its turn", { node: node.id, error: e });
        res.end();
      }
    });
  }

  /** Ends the requests still waiting for their turn (shutdown: the gate is closed). */
  endWaiting(): void {
    for (const res of [...this.waiting]) res.end();
    this.waiting.clear();
  }

  /** The node the request names, if it belongs to this machine (else an HttpError). */
  private checkNode(req: MapRequest, machineKey: MachineKey): NodeRecord {
    const nodeKey = usableKey(req.NodeKey, "nodekey:");
    if (!nodeKey) throw new HttpError(400, "NodeKey is missing or not a valid nodekey");
    const node = this.deps.state.nodeByNodeKey(nodeKey);
    if (!node) throw new HttpError(404, "node not found");
    if (node.machineKey !== machineKey) {
      throw new HttpError(404, "node key in request does not match the one of this machine key");
    }
    return node;
  }

  /**
   * Answers the request now. `setupDone` (its gate slot) is called once the answer — a stream's
   * full map, or a one-shot response — has been handed over.
   */
  private serve(req: MapRequest, id: number, res: H2Response, setupDone?: () => void): void {
    const { state, mapper, notifier, ephemeral, log } = this.deps;
    if (!state.getNode(id)) throw new HttpError(404, "node not found");
    state.applyReport(id, reportOf(req));
    const zstd = req.Compress === "zstd";

    if (!req.Stream) {
      if (req.OmitPeers) {
        this.stats.liteUpdates++;
        res.writeHead(200);
        res.end();
        setupDone?.();
        return;
      }
      // A client reads one message of a one-shot map: it must be current on its own.
      const msg = mapper.fullMapMessages(id, { fresh: true })?.[0];
      if (msg === undefined) throw new HttpError(404, "node not found");
      this.stats.fullMapsSent++;
      this.deps.dump?.write(id, msg.json);
      res.writeHead(200, { "content-type": "application/octet-stream" });
      res.write(msg.frame(zstd), setupDone);
      res.end();
      return;
    }

    const stream = new MapStream(
      id,
      res,
      zstd,
      {
        keepAliveMs: this.keepAliveMs,
        jitterMs: this.jitterMs,
        maxBufferedBytes: this.maxBufferedBytes,
        dump: this.deps.dump,
      },
      log.child({ node: id }),
      setupDone,
    );
    res.writeHead(200, { "content-type": "application/octet-stream" });
    // Opened before the old stream (if any) is closed, so the node does not flap offline.
    state.streamOpened(id);
    this.stats.streamsOpened++;
    ephemeral.cancel(id);
    state.noteCapVersion(id, req.Version);
    notifier.register(stream);
    let cleanedUp = false;
    const cleanUp = () => {
      if (cleanedUp) return;
      cleanedUp = true;
      this.stats.streamsEnded++;
      stream.close("stream ended");
      notifier.unregister(stream);
      state.streamClosed(id);
      if (!state.isOnline(id)) ephemeral.schedule(id);
    };
    // Finished, reset by the client or its connection gone: nothing more can be written.
    res.onClose(() => {
      stream.abort();
      cleanUp();
    });

    const msgs = mapper.fullMapMessages(id);
    if (msgs === null) {
      cleanUp();
      return;
    }
    for (const msg of msgs) stream.send(msg);
    this.stats.fullMapsSent++;
    log.debug("map stream opened", { node: id });
  }
}

function reportOf(req: MapRequest): NodeReport {
  const report: NodeReport = {};
  const disco = usableKey(req.DiscoKey, "discokey:");
  if (disco) report.discoKey = disco;
  if (Array.isArray(req.Endpoints)) report.endpoints = sanitizeEndpoints(req.Endpoints);
  const hostinfo = sanitizeHostinfo(req.Hostinfo);
  if (hostinfo) report.hostinfo = hostinfo;
  return report;
}
