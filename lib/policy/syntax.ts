/**
 * The small grammars inside policy strings: aliases ("tag:web", "alice@", "10.0.0.0/8"),
 * destinations with ports ("tag:web:80,443"), port lists, protocols and Go durations.
 * Error messages follow the hosted service's wording where it is known.
 */

import { parseIP, parsePrefix } from "../net/ip.ts";
import { prefixRange } from "./ipset.ts";
import { type Alias, ALL_PORTS, type AutogroupName, PolicyError, type PortRange } from "./types.ts";

export const AUTOGROUPS: readonly AutogroupName[] = [
  "member",
  "tagged",
  "self",
  "internet",
  "nonroot",
  "danger-all",
  "admin",
  "owner",
  "it-admin",
  "network-admin",
  "billing-admin",
  "auditor",
  "shared",
];

const HOST_NAME = /^[A-Za-z0-9_]([A-Za-z0-9._-]*[A-Za-z0-9_])?$/;

export function aliasText(a: Alias): string {
  switch (a.kind) {
    case "wildcard":
      return "*";
    case "user":
      return a.token;
    case "userDomain":
      return `user:*@${a.domain}`;
    case "group":
    case "tag":
    case "host":
      return a.name;
    case "prefix":
      return a.text;
    case "autogroup":
      return `autogroup:${a.name}`;
  }
}

/** Parses one alias; surrounding whitespace is ignored, as the hosted service does. */
export function parseAlias(raw: string): Alias {
  const text = raw.trim();
  if (text === "*") return { kind: "wildcard" };
  if (/^[0-9a-fA-F:.]+(\/\d+)?$/.test(text) && (text.includes(".") || text.includes(":"))) {
    const p = parsePrefix(text);
    if (p) return { kind: "prefix", range: prefixRange(p), text };
    throw new PolicyError(`${JSON.stringify(text)}: invalid address`);
  }
  if (text.startsWith("user:")) {
    const rest = text.slice(5);
    if (rest.startsWith("*@") && rest.length > 2) {
      return { kind: "userDomain", domain: rest.slice(2) };
    }
    if (rest.includes("@")) return { kind: "user", token: rest };
    throw new PolicyError(`${JSON.stringify(text)}: invalid user`);
  }
  if (text.startsWith("group:")) {
    if (text.length === 6) throw new PolicyError(`${JSON.stringify(text)}: empty group name`);
    return { kind: "group", name: text };
  }
  if (text.startsWith("tag:")) {
    validateTagName(text);
    return { kind: "tag", name: text };
  }
  if (text.startsWith("autogroup:")) {
    const name = text.slice(10) as AutogroupName;
    if (!AUTOGROUPS.includes(name)) {
      throw new PolicyError(`unknown autogroup ${JSON.stringify(text)}`);
    }
    return { kind: "autogroup", name };
  }
  if (text.includes("@")) return { kind: "user", token: text };
  if (HOST_NAME.test(text)) return { kind: "host", name: text };
  throw new PolicyError(`${JSON.stringify(text)}: invalid address`);
}

/** Tag names start with an ASCII letter after "tag:". */
export function validateTagName(tag: string): void {
  if (!/^[A-Za-z]/.test(tag.slice(4))) {
    throw new PolicyError(
      `${JSON.stringify(tag)}: tag names must start with a letter, after 'tag:'`,
    );
  }
}

function parsePort(text: string): number {
  if (!/^[+-]?\d+$/.test(text)) throw new PolicyError("invalid first integer");
  const n = Number(text);
  if (n < 0 || n > 65535) throw new PolicyError("port number out of range");
  return n;
}

/** "*", "22", "80-90", "22,80,8000-8100". */
export function parsePorts(text: string): PortRange[] {
  if (text === "*") return [ALL_PORTS];
  const out: PortRange[] = [];
  for (const part of text.split(",")) {
    if (part.includes("-")) {
      const ends = part.split("-").filter((s) => s !== "");
      if (ends.length !== 2) throw new PolicyError("invalid port range format");
      const first = parsePort(ends[0]);
      const last = parsePort(ends[1]);
      if (first > last) {
        throw new PolicyError("invalid port range: first port is greater than last port");
      }
      out.push({ first, last });
    } else {
      const p = parsePort(part);
      if (p < 1) throw new PolicyError("first port must be >0, or use '*' for wildcard");
      out.push({ first: p, last: p });
    }
  }
  return out;
}

/** Splits "alias:ports", honouring "[v6]:port" and "[v6]/bits:port". */
export function splitHostPort(input: string): [string, string] {
  let text = input;
  if (text.startsWith("[")) {
    const close = text.indexOf("]");
    const host = close < 0 ? "" : text.slice(1, close);
    const ip = parseIP(host);
    const rest = close < 0 ? "" : text.slice(close + 1);
    if (!ip || ip.family !== 6 || !(rest.startsWith(":") || rest.startsWith("/"))) {
      throw new PolicyError(
        `square brackets are only valid around IPv6 addresses: ${JSON.stringify(input)}`,
      );
    }
    text = host + rest;
  }
  const colon = text.lastIndexOf(":");
  if (colon < 0) throw new PolicyError("hostport must contain a colon");
  if (colon === 0) throw new PolicyError("input cannot start with a colon character");
  if (colon === text.length - 1) throw new PolicyError("input cannot end with a colon character");
  return [text.slice(0, colon), text.slice(colon + 1)];
}

export interface DstWithPorts {
  alias: Alias;
  ports: PortRange[];
}

/** An ACL destination "alias:ports"; errors read `dst="…": …` like the hosted service. */
export function parseDestination(raw: string): DstWithPorts {
  const text = raw.trim();
  try {
    const [host, ports] = splitHostPort(text);
    let parsed: PortRange[];
    try {
      parsed = parsePorts(ports);
    } catch (e) {
      throw new PolicyError(`port range ${JSON.stringify(ports)}: ${(e as Error).message}`);
    }
    return { alias: parseAlias(host), ports: parsed };
  } catch (e) {
    throw new PolicyError(`dst=${JSON.stringify(text)}: ${(e as Error).message}`);
  }
}

const PROTOCOLS: Record<string, number> = {
  icmp: 1,
  igmp: 2,
  ipv4: 4,
  "ip-in-ip": 4,
  tcp: 6,
  egp: 8,
  igp: 9,
  udp: 17,
  gre: 47,
  esp: 50,
  ah: 51,
  "ipv6-icmp": 58,
  sctp: 132,
  fc: 133,
};

/** Protocols that carry ports; rules naming any other protocol may only use "*". */
export const PORT_PROTOCOLS = new Set([6, 17, 132]);

/** A protocol by name (any case) or IANA number 0-255 without leading zeros. */
export function parseProtocol(raw: string): number {
  const text = raw.toLowerCase();
  if (text in PROTOCOLS) return PROTOCOLS[text];
  if (text === "*") {
    throw new PolicyError(
      'proto name "*" not known; use protocol number 0-255 or protocol name (icmp, tcp, udp, etc.)',
    );
  }
  if (/^\d+$/.test(text)) {
    if (text.length > 1 && text[0] === "0" || text === "0") {
      throw new PolicyError(`leading 0 not permitted in protocol number: ${JSON.stringify(raw)}`);
    }
    const n = Number(text);
    if (n > 255) throw new PolicyError(`protocol number out of range (0-255): ${n}`);
    return n;
  }
  throw new PolicyError(
    `invalid protocol number: ${
      JSON.stringify(raw)
    } must be a known protocol name or valid protocol number 0-255`,
  );
}

/** Go's time.ParseDuration; returns nanoseconds. */
export function parseGoDuration(text: string): number {
  const bad = () => new PolicyError(`time: invalid duration ${JSON.stringify(text)}`);
  let s = text;
  let sign = 1;
  if (s.startsWith("-") || s.startsWith("+")) {
    if (s[0] === "-") sign = -1;
    s = s.slice(1);
  }
  if (s === "0") return 0;
  if (s === "") throw bad();
  const units: Record<string, number> = {
    ns: 1,
    us: 1e3,
    "µs": 1e3,
    "μs": 1e3,
    ms: 1e6,
    s: 1e9,
    m: 60e9,
    h: 3600e9,
  };
  let total = 0;
  const re = /^(\d*)(\.\d*)?(ns|us|µs|μs|ms|s|m|h)/;
  while (s.length > 0) {
    const m = re.exec(s);
    if (!m || (m[1] === "" && (m[2] === undefined || m[2] === "."))) throw bad();
    const whole = Number(m[1] || "0");
    const frac = m[2] ? Number("0" + m[2]) : 0;
    total += (whole + frac) * units[m[3]];
    s = s.slice(m[0].length);
  }
  return sign * Math.round(total);
}

/** Formats nanoseconds like Go's Duration.String (e.g. "168h0m1s"). */
export function formatGoDuration(ns: number): string {
  if (ns === 0) return "0s";
  const neg = ns < 0;
  let rest = Math.abs(ns);
  if (rest < 1e9) {
    const unit = rest < 1e3 ? ["ns", 1] : rest < 1e6 ? ["µs", 1e3] : ["ms", 1e6];
    return `${neg ? "-" : ""}${rest / (unit[1] as number)}${unit[0]}`;
  }
  const h = Math.floor(rest / 3600e9);
  rest -= h * 3600e9;
  const m = Math.floor(rest / 60e9);
  rest -= m * 60e9;
  const s = rest / 1e9;
  let out = `${s}s`;
  if (h > 0 || m > 0) out = `${m}m${out}`;
  if (h > 0) out = `${h}h${out}`;
  return (neg ? "-" : "") + out;
}
