/**
 * The server's metrics under headscale's `headscale_` namespace: the tailnet (users, nodes,
 * who is online), map sessions and what they were sent, interactive logins, the embedded DERP
 * relay and STUN server, and the process. Everything is read at scrape time.
 */
import type { DerpStats, StunServerStats } from "../derp/mod.ts";
import { MetricsRegistry } from "./registry.ts";

export interface TailnetMetricsSources {
  state: {
    listUsers(): readonly unknown[];
    readonly nodeCount: number;
    readonly onlineCount: number;
  };
  sessions: () => number;
  pendingLogins: () => number;
  maps: Readonly<
    { streamsOpened: number; streamsEnded: number; fullMapsSent: number; liteUpdates: number }
  >;
  notifier: Readonly<{
    batches: number;
    deltasSent: number;
    fullMapsSent: number;
    flushSeconds: number;
    lastFlushSeconds: number;
  }>;
  derp: () => { relay: DerpStats | null; stun: StunServerStats | null };
  startedAt: Date;
}

export function tailnetMetrics(src: TailnetMetricsSources): MetricsRegistry {
  const relay = () => {
    const r = src.derp().relay;
    if (!r) throw new Error("relay disabled"); // left out of the scrape
    return r;
  };
  const stun = () => {
    const s = src.derp().stun;
    if (!s) throw new Error("stun disabled");
    return s;
  };
  return new MetricsRegistry()
    .gauge("headscale_users", "users in the tailnet", () => src.state.listUsers().length)
    .gauge("headscale_nodes", "nodes in the tailnet, by whether a map stream is open", () => {
      const online = src.state.onlineCount;
      return [[{ state: "online" }, online], [{ state: "offline" }, src.state.nodeCount - online]];
    })
    .gauge("headscale_map_sessions", "open map streams", src.sessions)
    .gauge("headscale_pending_logins", "interactive logins waiting for an admin", src.pendingLogins)
    .counter(
      "headscale_map_streams_opened_total",
      "map streams opened",
      () => src.maps.streamsOpened,
    )
    .counter("headscale_map_streams_ended_total", "map streams ended", () => src.maps.streamsEnded)
    .counter("headscale_mapresponse_sent_total", "map responses sent to clients", () => [
      [{ type: "full" }, src.maps.fullMapsSent + src.notifier.fullMapsSent],
      [{ type: "delta" }, src.notifier.deltasSent],
    ])
    .counter(
      "headscale_mapresponse_endpoint_updates_total",
      "endpoint and Hostinfo updates received without a map (lite map requests)",
      () => src.maps.liteUpdates,
    )
    .counter(
      "headscale_change_batches_total",
      "batches of changes fanned out",
      () => src.notifier.batches,
    )
    .counter(
      "headscale_change_flush_seconds_total",
      "time spent fanning batches out (building, sealing and writing deltas)",
      () => src.notifier.flushSeconds,
    )
    .gauge(
      "headscale_change_last_flush_seconds",
      "how long the last batch took to fan out",
      () => src.notifier.lastFlushSeconds,
    )
    .gauge(
      "headscale_derp_clients",
      "DERP clients connected to the embedded relay",
      () => relay().clients,
    )
    .counter(
      "headscale_derp_packets_forwarded_total",
      "packets the embedded DERP relay forwarded",
      () => relay().packetsForwarded,
    )
    .counter(
      "headscale_derp_bytes_forwarded_total",
      "bytes the embedded DERP relay forwarded",
      () => relay().bytesForwarded,
    )
    .counter("headscale_derp_packets_dropped_total", "packets the relay dropped", () => {
      const r = relay();
      return [[{ reason: "unknown_dest" }, r.droppedUnknownDest], [
        { reason: "queue_full" },
        r.droppedQueueFull,
      ]];
    })
    .counter("headscale_stun_requests_total", "STUN binding requests", () => stun().requests)
    .gauge(
      "process_start_time_seconds",
      "start time of the process (Unix seconds)",
      () => Math.floor(src.startedAt.getTime() / 1000),
    )
    .gauge("process_resident_memory_bytes", "resident memory", () => Deno.memoryUsage().rss)
    .gauge("deno_heap_used_bytes", "V8 heap in use", () => Deno.memoryUsage().heapUsed);
}
