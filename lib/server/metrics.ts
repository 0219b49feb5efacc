/**
 * metrics_listen_addr: Prometheus metrics at `GET /metrics` on a listener of their own (keep it
 * on loopback or a private network, as headscale's). An empty address turns it off.
 */
import { createServer, type Server } from "node:http";
import { sendText } from "../http/router.ts";
import { METRICS_CONTENT_TYPE, type MetricsRegistry } from "../metrics/registry.ts";
import { listenOn } from "./addr.ts";
import { applyHttpLimits, type HttpLimits, httpServerOptions } from "../http/limits.ts";

export interface MetricsListener {
  /** host:port it is bound to. */
  address: string;
  close(): Promise<void>;
}

export async function startMetricsListener(
  addr: string,
  metrics: MetricsRegistry,
  limits?: HttpLimits,
): Promise<MetricsListener | null> {
  if (addr === "") return null;
  const server: Server = createServer(limits ? httpServerOptions(limits) : {});
  if (limits) applyHttpLimits(server, limits);
  server.on("request", (req, res) => {
    const path = (req.url ?? "/").split("?")[0];
    if (path !== "/metrics") return sendText(res, 404, "not found\n");
    if (req.method !== "GET" && req.method !== "HEAD") {
      return sendText(res, 405, "method not allowed\n");
    }
    res.writeHead(200, { "content-type": METRICS_CONTENT_TYPE, "cache-control": "no-store" });
    res.end(req.method === "HEAD" ? undefined : metrics.render());
  });
  const address = await listenOn(server, addr);
  return {
    address,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
