/** Listen addresses: "0.0.0.0:3478", "[::]:443", ":8080". */
import type { Server } from "node:net";

/** host:port parsing for listen addresses. */
export function splitHostPort(addr: string): { host: string; port: number } {
  const m = /^\[?([^\]]*)\]?:(\d+)$/.exec(addr);
  if (!m) throw new Error(`invalid address ${addr}`);
  return { host: m[1] || "0.0.0.0", port: Number(m[2]) };
}

/** Starts `server` listening on `addr`; resolves with the bound host:port (port 0 → the real one). */
export function listenOn(server: Server, addr: string): Promise<string> {
  const { host, port } = splitHostPort(addr);
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => {
      server.off("error", reject);
      const a = server.address();
      resolve(
        typeof a === "object" && a ? `${host.includes(":") ? `[${host}]` : host}:${a.port}` : addr,
      );
    });
  });
}
