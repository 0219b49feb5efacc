/**
 * `POST /machine/map`. Three shapes:
 * - Stream:true — the long poll: a full map first, then deltas from the notifier and
 *   `{"KeepAlive":true}` every 50 s + jitter. The node is online while the stream is open; a new
 *   stream from the same node replaces the old one.
 * - Stream:false, OmitPeers:true — a "lite" update: store endpoints/Hostinfo/disco key, 200, end.
 * - Stream:false, OmitPeers:false — one full map, then end.
 * Every request carries Hostinfo/Endpoints/DiscoKey; they are applied before the map is built.
 */
import type { Http2ServerResponse } from "node:http2";
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

export interface MapServiceDeps {
  state: State;
  mapper: Mapper;
  notifier: Notifier;
  ephemeral: EphemeralGc;
  log: Logger;
  keepAliveMs?: number;
  keepAliveJitterMs?: number;
  /** A stream with more unsent bytes than this is closed (the client reconnects). */
  maxBufferedBytes?: number;
  /** Also write every map response sent to disk (HEADSCALE_DEBUG_DUMP_MAPRESPONSE_PATH). */
  dump?: MapResponseDump;
}

/**
 * Bytes handed to the HTTP/2 stream at a time. Deno's node:http2 copies every write into a
 * per-stream buffer that keeps its largest size for the stream's life, so writing a whole full
 * map (MBs at 10,000 nodes) would leave every long poll holding that much: memory growing with
 * the square of the tailnet. Written a piece at a time, each after the previous one was taken,
 * a stream keeps at most one piece; what waits is a view of the shared frame.
 */
export const WRITE_PIECE_BYTES = 16 << 10;

/** One open long poll. */
class MapStream implements MapSink {
  private closed = false;
  private aborted = false;
  private keepAliveTimer: ReturnType<typeof setTimeout> | undefined;
  /** When the next keep-alive is due (performance.now() time). */
  private keepAliveDue = 0;
  /** Frames (shared between sessions) not yet handed to the HTTP/2 stream, oldest first. */
  private readonly queue: Uint8Array[] = [];
  /** How far the first queued frame has been written. */
  private queueOffset = 0;
  private queuedBytes = 0;
  private writing = false;
  /** Called once, when the first message (the full map) has been handed to the stream. */
  private firstWritten: (() => void) | undefined;

  constructor(
    readonly nodeId: number,
    private readonly res: Http2ServerResponse,
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
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /** Bytes queued here or in the HTTP/2 stream, not yet taken by it. */
  get bufferedBytes(): number {
    return this.queuedBytes - this.queueOffset + this.res.writableLength;
  }

  send(msg: SharedMessage): void {
    if (this.closed || this.aborted || this.res.destroyed) return;
    if (this.bufferedBytes > this.opts.maxBufferedBytes) {
      this.log.warn("map stream too slow, closing it", { node: this.nodeId });
      this.dropQueue();
      this.close("client too slow");
      return;
    }
    if (this.opts.dump && msg !== KEEP_ALIVE) this.opts.dump.write(this.nodeId, msg.json);
    const frame = msg.frame(this.zstd);
    this.queue.push(frame);
    this.queuedBytes += frame.byteLength;
    this.pump();
    this.armKeepAlive();
  }

  /**
   * Writes the next piece of the queue once the previous one was taken; after close, ends the
   * response when the queue is empty.
   */
  private pump(): void {
    if (this.writing || this.aborted || this.res.destroyed) return;
    const frame = this.queue[0];
    if (frame === undefined) {
      const first = this.firstWritten;
      this.firstWritten = undefined;
      first?.();
      if (this.closed && !this.res.writableEnded) this.res.end();
      return;
    }
    const end = Math.min(frame.byteLength, this.queueOffset + WRITE_PIECE_BYTES);
    const piece = frame.subarray(this.queueOffset, end);
    if (end === frame.byteLength) {
      this.queue.shift();
      this.queuedBytes -= frame.byteLength;
      this.queueOffset = 0;
    } else {
      this.queueOffset = end;
    }
    this.writing = true;
    try {
      this.res.write(piece, (e) => {
        this.writing = false;
        if (e) this.writeFailed(e);
        else this.pump();
      });
    } catch (e) {
      this.writing = false;
      this.writeFailed(e);
    }
  }

  private writeFailed(error: unknown): void {
    this.log.debug("map stream write failed", { node: this.nodeId, error });
    this.dropQueue();
    this.close("write failed");
  }

  private dropQueue(): void {
    this.queue.length = 0;
    this.queuedBytes = this.queueOffset = 0;
  }

  /**
   * A keep-alive goes out after keepAliveMs (plus jitter) without any message. Sending only moves
   * the deadline; the one timer re-arms itself when it fires early, so a busy stream does not pay
   * for a new timer on every message (at 10,000 streams that was 7 % of a fan-out's CPU).
   */
  armKeepAlive(): void {
    if (this.closed) return;
    this.keepAliveDue = performance.now() + this.opts.keepAliveMs +
      Math.floor(Math.random() * this.opts.jitterMs);
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
    if (this.aborted) {
      this.dropQueue();
      if (!this.res.stream.destroyed) this.res.stream.destroy();
    } else {
      this.pump();
    }
  }
}

export class MapService {
  /** Totals since start (read by the metrics endpoint). */
  readonly stats = { streamsOpened: 0, streamsEnded: 0, fullMapsSent: 0, liteUpdates: 0 };
  private readonly keepAliveMs: number;
  private readonly jitterMs: number;
  private readonly maxBufferedBytes: number;

  constructor(private readonly deps: MapServiceDeps) {
    this.keepAliveMs = deps.keepAliveMs ?? 50_000;
    this.jitterMs = deps.keepAliveJitterMs ?? 9_000;
    this.maxBufferedBytes = deps.maxBufferedBytes ?? 64 << 20;
  }

  /** Serves one map request from the Noise peer `machineKey`. Throws HttpError before replying. */
  /**
   * `setupDone` (the connection's set-up slot, setup_gate.ts) is called once the answer — a
   * stream's full map, or a one-shot response — has been handed over.
   */
  handle(
    req: MapRequest,
    machineKey: MachineKey,
    res: Http2ServerResponse,
    setupDone?: () => void,
  ): void {
    const { state, mapper, notifier, ephemeral, log } = this.deps;
    const nodeKey = usableKey(req.NodeKey, "nodekey:");
    if (!nodeKey) throw new HttpError(400, "NodeKey is missing or not a valid nodekey");
    const node = state.nodeByNodeKey(nodeKey);
    if (!node) throw new HttpError(404, "node not found");
    if (node.machineKey !== machineKey) {
      throw new HttpError(404, "node key in request does not match the one of this machine key");
    }
    const id = node.id;
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
      const msg = mapper.fullMapMessage(id);
      if (msg === null) throw new HttpError(404, "node not found");
      this.stats.fullMapsSent++;
      this.deps.dump?.write(id, msg.json);
      res.writeHead(200, { "content-type": "application/octet-stream" });
      res.end(msg.frame(zstd), () => setupDone?.());
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
    // A client that cancels its poll sends RST_STREAM: 'aborted' is the reliable signal (Deno
    // may not emit 'close' for a stream reset while it has writes in flight).
    res.on("close", cleanUp);
    res.stream.on("close", cleanUp);
    res.stream.on("aborted", () => {
      stream.abort();
      cleanUp();
    });
    res.on("error", (e) => log.debug("map stream error", { node: id, error: e }));

    const msg = mapper.fullMapMessage(id);
    if (msg === null) {
      cleanUp();
      return;
    }
    stream.send(msg);
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
