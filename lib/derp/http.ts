/**
 * HTTP glue for the embedded DERP server, for the main listener to mount: the /derp upgrade
 * (plain DERP or WebSocket), the probe and captive-portal endpoints, /bootstrap-dns and
 * POST /verify (derper's admission-control protocol).
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Duplex } from "node:stream";
import { lookup } from "node:dns/promises";
import type { Logger } from "../log/log.ts";
import type { DerpServer, VerifyInfo } from "./server.ts";
import { parseNodeKeyText } from "./keys.ts";
import { PROTOCOL_VERSION } from "./frame.ts";
import { webSocketAccept, WebSocketStream } from "./websocket.ts";

const UPGRADE_REQUIRED = "DERP requires connection upgrade";

function header(req: IncomingMessage, name: string): string {
  const v = req.headers[name];
  return (Array.isArray(v) ? v[0] : v) ?? "";
}

function remoteOf(socket: Duplex): string {
  const s = socket as { remoteAddress?: string; remotePort?: number };
  if (!s.remoteAddress) return "";
  return s.remoteAddress.includes(":")
    ? `[${s.remoteAddress}]:${s.remotePort}`
    : `${s.remoteAddress}:${s.remotePort}`;
}

function rawResponse(socket: Duplex, status: string, body: string): void {
  socket.end(
    `HTTP/1.1 ${status}\r\nContent-Type: text/plain; charset=utf-8\r\n` +
      `Content-Length: ${
        new TextEncoder().encode(body).length
      }\r\nConnection: close\r\n\r\n${body}`,
  );
}

/**
 * node:http 'upgrade' handler for /derp. `Upgrade: DERP` (any case) gets a 101 with the
 * Derp-Version and Derp-Public-Key headers (none with `Derp-Fast-Start: 1`), then the raw
 * socket goes to the DERP server. `Upgrade: websocket` with the "derp" subprotocol gets a
 * WebSocket whose binary messages carry the DERP stream. Anything else gets 426.
 */
export function handleDerpUpgrade(
  req: IncomingMessage,
  socket: Duplex,
  head: Uint8Array,
  server: DerpServer,
): void {
  const upgrade = header(req, "upgrade").toLowerCase();
  const remoteAddress = remoteOf(req.socket ?? socket);
  (socket as { setNoDelay?: (v: boolean) => void }).setNoDelay?.(true);

  const subprotocols = header(req, "sec-websocket-protocol").split(",").map((s) => s.trim());
  if (upgrade === "websocket" && subprotocols.includes("derp")) {
    const key = header(req, "sec-websocket-key");
    if (!/^[A-Za-z0-9+/]{22}==$/.test(key) || header(req, "sec-websocket-version") !== "13") {
      return rawResponse(socket, "400 Bad Request", "bad WebSocket handshake\n");
    }
    socket.write(
      "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
        `Sec-WebSocket-Accept: ${webSocketAccept(key)}\r\nSec-WebSocket-Protocol: derp\r\n\r\n`,
    );
    const ws = new WebSocketStream(socket, { role: "server", remoteAddress });
    server.accept(ws, { remoteAddress });
    ws.feed(head);
    return;
  }
  // Very old clients said "websocket" but spoke plain DERP; Tailscale accepts that too.
  if (upgrade !== "derp" && upgrade !== "websocket") {
    return rawResponse(socket, "426 Upgrade Required", UPGRADE_REQUIRED);
  }
  if (header(req, "derp-fast-start") !== "1") {
    socket.write(
      "HTTP/1.1 101 Switching Protocols\r\nUpgrade: DERP\r\nConnection: Upgrade\r\n" +
        `Derp-Version: ${PROTOCOL_VERSION}\r\nDerp-Public-Key: ${server.publicKeyHex}\r\n\r\n`,
    );
  }
  server.accept(socket, { head, remoteAddress });
}

/** `/derp` reached as a plain request (no Upgrade header): 426, as Tailscale's handler does. */
export function derpNoUpgradeHandler(_req: IncomingMessage, res: ServerResponse): void {
  res.writeHead(426, { "content-type": "text/plain; charset=utf-8" });
  res.end(UPGRADE_REQUIRED);
}

/** `GET|HEAD /derp/probe` and `/derp/latency-check`: netcheck's HTTPS latency probe. */
export function derpProbeHandler(req: IncomingMessage, res: ServerResponse): void {
  if (req.method === "GET" || req.method === "HEAD") {
    res.writeHead(200, { "access-control-allow-origin": "*" });
    res.end();
    return;
  }
  res.writeHead(405, { "content-type": "text/plain; charset=utf-8" });
  res.end("bogus probe method\n");
}

const CHALLENGE_RE = /^[A-Za-z0-9._:-]{1,64}$/;

/** `GET /generate_204`: captive-portal check, echoing a well-formed X-Tailscale-Challenge. */
export function generate204Handler(req: IncomingMessage, res: ServerResponse): void {
  const headers: Record<string, string> = {
    "cache-control": "no-cache, no-store, must-revalidate, no-transform, max-age=0",
  };
  const challenge = header(req, "x-tailscale-challenge");
  if (CHALLENGE_RE.test(challenge)) headers["x-tailscale-response"] = "response " + challenge;
  res.writeHead(204, headers);
  res.end();
}

export interface BootstrapDnsOptions {
  /** Names to answer for: usually every HostName in the current DERP map. */
  hostNames: () => Iterable<string>;
  /** Resolver; node:dns lookup (all addresses) by default. */
  resolve?: (host: string) => Promise<string[]>;
  /** How long answers are reused (10 min). */
  cacheMs?: number;
  /** Per-name lookup limit (5 s). */
  lookupTimeoutMs?: number;
  log?: Logger;
}

/**
 * `GET /bootstrap-dns[?q=name]`: `{"name": ["ip", …]}` for clients whose DNS is broken. With
 * `q` naming a known host only that entry is returned; otherwise all of them.
 */
export function createBootstrapDnsHandler(opts: BootstrapDnsOptions) {
  const resolve = opts.resolve ??
    (async (host: string) => (await lookup(host, { all: true })).map((a) => a.address));
  const cacheMs = opts.cacheMs ?? 10 * 60_000;
  const timeoutMs = opts.lookupTimeoutMs ?? 5_000;
  let cache: { at: number; key: string; entries: Record<string, string[]> } | undefined;
  let refreshing: Promise<Record<string, string[]>> | undefined;

  const withTimeout = (host: string) =>
    new Promise<string[]>((res) => {
      const t = setTimeout(() => res([]), timeoutMs);
      resolve(host).then(
        (ips) => {
          clearTimeout(t);
          res(ips);
        },
        (e) => {
          clearTimeout(t);
          opts.log?.debug("bootstrap-dns: lookup failed", { host, error: e });
          res([]);
        },
      );
    });

  const entries = (): Promise<Record<string, string[]>> => {
    const names = [...new Set(opts.hostNames())].sort();
    const key = names.join(",");
    if (cache && cache.key === key && Date.now() - cache.at < cacheMs) {
      return Promise.resolve(cache.entries);
    }
    refreshing ??= Promise.all(names.map(withTimeout)).then((lists) => {
      const out: Record<string, string[]> = {};
      names.forEach((n, i) => {
        if (lists[i].length > 0) out[n] = lists[i];
      });
      cache = { at: Date.now(), key, entries: out };
      refreshing = undefined;
      return out;
    });
    return refreshing;
  };

  return async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const all = await entries();
    const q = new URL(req.url ?? "/", "http://x").searchParams.get("q");
    const body = q !== null && all[q] ? { [q]: all[q] } : all;
    res.writeHead(200, { "content-type": "application/json", connection: "close" });
    res.end(JSON.stringify(body));
  };
}

const VERIFY_BODY_LIMIT = 4 << 10;

/**
 * `POST /verify`: tailcfg.DERPAdmitClientRequest `{"NodePublic":"nodekey:…","Source":"ip"}`
 * → `{"Allow":bool}`, decided by the same callback the embedded DERP server uses. Lets an
 * external derper (`--verify-client-url`) admit only this tailnet's nodes.
 */
export function createVerifyHandler(
  verify: (nodeKey: string, info: VerifyInfo) => boolean | Promise<boolean>,
  log?: Logger,
) {
  return async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const fail = (status: number, msg: string) => {
      res.writeHead(status, { "content-type": "text/plain; charset=utf-8" });
      res.end(msg + "\n");
    };
    if (req.method !== "POST") return fail(405, "method not allowed");
    let body: string;
    try {
      body = await readBody(req, VERIFY_BODY_LIMIT);
    } catch (e) {
      res.setHeader("connection", "close");
      return fail(413, (e as Error).message);
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(body);
    } catch {
      return fail(400, "Bad Request: invalid JSON");
    }
    const request = parsed as { NodePublic?: unknown; Source?: unknown } | null;
    const nodeKey = typeof request?.NodePublic === "string" ? request.NodePublic : "";
    if (parseNodeKeyText(nodeKey) === null) {
      return fail(400, "Bad Request: NodePublic must be nodekey:<64 hex digits>");
    }
    const source = typeof request?.Source === "string" ? request.Source : "";
    let allow = false;
    try {
      allow = (await verify(nodeKey, { remoteAddress: source })) === true;
    } catch (e) {
      log?.warn("derp verify: check failed; denying", { error: e });
    }
    res.writeHead(200, { "content-type": "application/json" });
    res.end(JSON.stringify({ Allow: allow }));
  };
}

function readBody(req: IncomingMessage, limit: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const parts: Uint8Array[] = [];
    let size = 0;
    req.on("data", (chunk: Uint8Array) => {
      size += chunk.length;
      if (size > limit) {
        // Stop keeping bytes; the 413 response closes the connection.
        req.removeAllListeners("data");
        req.resume();
        reject(new Error("request body too large"));
        return;
      }
      parts.push(chunk);
    });
    req.on("end", () => {
      const all = new Uint8Array(size);
      let off = 0;
      for (const p of parts) {
        all.set(p, off);
        off += p.length;
      }
      resolve(new TextDecoder().decode(all));
    });
    req.on("error", reject);
  });
}
