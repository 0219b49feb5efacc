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

/** One open long poll. */
class MapStream implements MapSink {
  private closed = false;
  private aborted = false;
  private keepAliveTimer: ReturnType<typeof setTimeout> | undefined;

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
  ) {}

  get isClosed(): boolean {
    return this.closed;
  }

  send(msg: SharedMessage): void {
    if (this.closed || this.aborted || this.res.destroyed) return;
    if (this.res.writableLength > this.opts.maxBufferedBytes) {
      this.log.warn("map stream too slow, closing it", { node: this.nodeId });
      this.close("client too slow");
      return;
    }
    if (this.opts.dump && msg !== KEEP_ALIVE) this.opts.dump.write(this.nodeId, msg.json);
    try {
      const ok = this.res.write(msg.frame(this.zstd));
      if (!ok) this.log.trace("map stream buffering", { buffered: this.res.writableLength });
    } catch (e) {
      this.log.debug("map stream write failed", { node: this.nodeId, error: e });
      this.close("write failed");
      return;
    }
    this.armKeepAlive();
  }

  armKeepAlive(): void {
    if (this.keepAliveTimer !== undefined) clearTimeout(this.keepAliveTimer);
    if (this.closed) return;
    const delay = this.opts.keepAliveMs + Math.floor(Math.random() * this.opts.jitterMs);
    this.keepAliveTimer = setTimeout(() => {
      this.keepAliveTimer = undefined;
      this.send(KEEP_ALIVE);
    }, delay);
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

  close(reason: string): void {
    if (this.closed) return;
    this.closed = true;
    if (this.keepAliveTimer !== undefined) clearTimeout(this.keepAliveTimer);
    this.keepAliveTimer = undefined;
    this.log.debug("map stream closed", { node: this.nodeId, reason });
    if (this.aborted) {
      if (!this.res.stream.destroyed) this.res.stream.destroy();
    } else if (!this.res.destroyed && !this.res.writableEnded) {
      this.res.end();
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
  handle(req: MapRequest, machineKey: MachineKey, res: Http2ServerResponse): void {
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
        return;
      }
      const msg = mapper.fullMapMessage(id);
      if (msg === null) throw new HttpError(404, "node not found");
      this.stats.fullMapsSent++;
      this.deps.dump?.write(id, msg.json);
      res.writeHead(200, { "content-type": "application/octet-stream" });
      res.end(msg.frame(zstd));
      return;
    }

    const stream = new MapStream(id, res, zstd, {
      keepAliveMs: this.keepAliveMs,
      jitterMs: this.jitterMs,
      maxBufferedBytes: this.maxBufferedBytes,
      dump: this.deps.dump,
    }, log.child({ node: id }));
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
