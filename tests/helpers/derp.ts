/**
 * A DERP server on an ephemeral local port, mounted the way the main listener mounts it, for
 * tests and benchmarks.
 */
import { createServer, type Server } from "node:http";
import type { Socket } from "node:net";
import { silentLogger } from "../../lib/log/log.ts";
import { DerpServer, type DerpServerOptions } from "../../lib/derp/server.ts";
import {
  derpNoUpgradeHandler,
  derpProbeHandler,
  generate204Handler,
  handleDerpUpgrade,
} from "../../lib/derp/http.ts";

export interface TestDerp {
  server: DerpServer;
  http: Server;
  port: number;
  /** http://127.0.0.1:<port>/derp */
  url: string;
  close(): Promise<void>;
}

export async function startTestDerp(opts: Partial<DerpServerOptions> = {}): Promise<TestDerp> {
  const server = new DerpServer({
    privateKey: crypto.getRandomValues(new Uint8Array(32)),
    log: silentLogger(),
    ...opts,
  });
  const sockets = new Set<Socket>();
  const http = createServer((req, res) => {
    const path = (req.url ?? "/").split("?")[0];
    if (path === "/derp") return derpNoUpgradeHandler(req, res);
    if (path === "/derp/probe" || path === "/derp/latency-check") return derpProbeHandler(req, res);
    if (path === "/generate_204") return generate204Handler(req, res);
    res.writeHead(404).end();
  });
  http.on("connection", (s: Socket) => {
    sockets.add(s);
    s.on("close", () => sockets.delete(s));
  });
  http.on("upgrade", (req, socket, head) => {
    socket.on("error", () => {});
    if ((req.url ?? "").split("?")[0] !== "/derp") return socket.destroy();
    handleDerpUpgrade(req, socket, head, server);
  });
  await new Promise<void>((resolve) => http.listen(0, "127.0.0.1", resolve));
  const port = (http.address() as { port: number }).port;
  return {
    server,
    http,
    port,
    url: `http://127.0.0.1:${port}/derp`,
    async close() {
      await server.close(200);
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => http.close(() => resolve()));
    },
  };
}
