/**
 * The main listener's routing: plain requests by method and path, HTTP upgrades by path. Small
 * on purpose: the control protocol lives behind /ts2021, the API behind /api/v1 and the Connect
 * paths, and each of those has its own handler.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Duplex } from "node:stream";
import type { Logger } from "../log/log.ts";
import { clientAddress } from "../net/client_addr.ts";

export type RequestHandler = (req: IncomingMessage, res: ServerResponse) => void | Promise<void>;
export type UpgradeHandler = (req: IncomingMessage, socket: Duplex, head: Buffer) => void;

interface Route {
  method: string | "*";
  /** Exact path, or a prefix when it ends with "/". */
  path: string;
  handler: RequestHandler;
}

export class Router {
  private readonly routes: Route[] = [];
  private readonly upgrades = new Map<string, UpgradeHandler>();

  constructor(private readonly log: Logger) {}

  on(method: string, path: string, handler: RequestHandler): this {
    this.routes.push({ method, path, handler });
    return this;
  }

  upgrade(path: string, handler: UpgradeHandler): this {
    this.upgrades.set(path, handler);
    return this;
  }

  private find(method: string, path: string): Route | "wrong-method" | undefined {
    let pathMatched = false;
    for (const r of this.routes) {
      const hit = r.path.endsWith("/") ? path.startsWith(r.path) : path === r.path;
      if (!hit) continue;
      if (r.method === "*" || r.method === method || (r.method === "GET" && method === "HEAD")) {
        return r;
      }
      pathMatched = true;
    }
    return pathMatched ? "wrong-method" : undefined;
  }

  handleRequest = (req: IncomingMessage, res: ServerResponse): void => {
    const path = (req.url ?? "/").split("?")[0];
    const route = this.find(req.method ?? "GET", path);
    if (route === undefined) return sendText(res, 404, "not found\n");
    if (route === "wrong-method") return sendText(res, 405, "method not allowed\n");
    Promise.resolve()
      .then(() => route.handler(req, res))
      .catch((e) => {
        this.log.error("request failed", { path, remote: clientAddress(req), error: e });
        if (!res.headersSent) sendText(res, 500, "internal error\n");
        else res.destroy();
      });
  };

  handleUpgrade = (req: IncomingMessage, socket: Duplex, head: Buffer): void => {
    const path = (req.url ?? "/").split("?")[0];
    const handler = this.upgrades.get(path);
    socket.on("error", (e) => this.log.debug("upgraded socket error", { path, error: e }));
    if (!handler) {
      socket.end("HTTP/1.1 404 Not Found\r\nConnection: close\r\nContent-Length: 0\r\n\r\n");
      return;
    }
    try {
      handler(req, socket, head);
    } catch (e) {
      this.log.error("upgrade failed", { path, error: e });
      socket.destroy();
    }
  };
}

export function sendText(res: ServerResponse, status: number, body: string): void {
  res.writeHead(status, { "content-type": "text/plain; charset=utf-8" });
  res.end(body);
}

export function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { "content-type": "application/json" });
  res.end(text);
}
