/**
 * The client's address behind a reverse proxy (trusted_proxies). A request whose TCP peer is one
 * of the trusted proxies is attributed to the address its proxy headers name: True-Client-IP or
 * X-Real-IP when present, else the rightmost X-Forwarded-For entry that is not itself a trusted
 * proxy (a client cannot win by prepending entries). Requests from any other peer keep their TCP
 * address and have those headers removed, so nothing downstream reads a spoofed value.
 */
import type { IncomingMessage } from "node:http";
import { formatIP, parseIP, parsePrefix, type Prefix, prefixContains } from "./ip.ts";

const PROXY_HEADERS = ["true-client-ip", "x-real-ip", "x-forwarded-for"] as const;
/** Where the hook leaves a request's resolved address: on the request itself, not in a table. */
const CLIENT_ADDRESS = Symbol("clientAddress");
type Resolved = IncomingMessage & { [CLIENT_ADDRESS]?: string };

/** Strips brackets, a zone and an IPv4-mapped prefix; null when it is not an address. */
function normalize(text: string): string | null {
  let t = text.trim();
  if (t.startsWith("[")) t = t.slice(1, t.indexOf("]") < 0 ? undefined : t.indexOf("]"));
  t = t.replace(/%.*$/, "");
  if (/^::ffff:\d+\.\d+\.\d+\.\d+$/i.test(t)) t = t.slice(7);
  else if (/^\d+\.\d+\.\d+\.\d+:\d+$/.test(t)) t = t.slice(0, t.lastIndexOf(":"));
  const ip = parseIP(t);
  return ip ? formatIP(ip) : null;
}

function trusted(addr: string | null, proxies: Prefix[]): boolean {
  if (addr === null) return false;
  const ip = parseIP(addr);
  return ip !== null && proxies.some((p) => prefixContains(p, ip));
}

function header(req: IncomingMessage, name: string): string | undefined {
  const v = req.headers[name];
  return Array.isArray(v) ? v.join(",") : v;
}

/** The client address for a request given the trusted proxy prefixes (pure; for tests). */
export function resolveClientAddress(req: IncomingMessage, proxies: Prefix[]): string {
  const peer = normalize(req.socket?.remoteAddress ?? "");
  if (!trusted(peer, proxies)) return peer ?? "";
  for (const name of ["true-client-ip", "x-real-ip"]) {
    const v = header(req, name);
    const ip = v === undefined ? null : normalize(v);
    if (ip) return ip;
  }
  const chain = (header(req, "x-forwarded-for") ?? "").split(",").map(normalize);
  for (let i = chain.length - 1; i >= 0; i--) {
    const ip = chain[i];
    if (ip === null) break; // A malformed entry: stop rather than guess past it.
    if (!trusted(ip, proxies)) return ip;
  }
  return peer!;
}

/**
 * Returns the hook the listener runs on every request and upgrade before routing: it records the
 * client address (read it with clientAddress) and strips proxy headers from untrusted peers.
 */
export function trustedProxyHook(prefixes: string[]): (req: IncomingMessage) => void {
  const proxies = prefixes.map((p) => parsePrefix(p)).filter((p): p is Prefix => p !== null);
  return (req) => {
    const peer = normalize(req.socket?.remoteAddress ?? "");
    if (!trusted(peer, proxies)) {
      for (const h of PROXY_HEADERS) delete req.headers[h];
    }
    (req as Resolved)[CLIENT_ADDRESS] = resolveClientAddress(req, proxies);
  };
}

/** The client's address: resolved through trusted_proxies when the hook ran, else the TCP peer. */
export function clientAddress(req: IncomingMessage): string {
  return (req as Resolved)[CLIENT_ADDRESS] ?? normalize(req.socket?.remoteAddress ?? "") ?? "";
}
