/**
 * Builds the tailcfg.DNSConfig every node receives, the way headscale derives it from the `dns`
 * section: MagicDNS (Proxied), search domains, global and split resolvers, extra records, and
 * with MagicDNS the base domain and the reverse zones of the tailnet prefixes routed to
 * quad-100 (`[]`, not null: the client's Clone drops null routes).
 */
import type { Config, DnsExtraRecord } from "../config/config.ts";
import { formatIP, parseIP, parsePrefix, type Prefix } from "../net/ip.ts";
import type { DNSConfig, DNSResolver } from "../tailcfg/types.ts";

export type DnsSettings = Config["dns"];

/** The node's MagicDNS FQDN with its trailing dot: `<givenName>.<baseDomain>.` */
export function nodeFqdn(givenName: string, baseDomain: string): string {
  return baseDomain ? `${givenName}.${baseDomain}.` : `${givenName}.`;
}

function resolverFor(addr: string): DNSResolver | null {
  if (parseIP(addr)) return { Addr: addr };
  try {
    const url = new URL(addr);
    if (url.protocol === "https:" || url.protocol === "http:") return { Addr: addr };
  } catch {
    // Not a URL either: ignored, as headscale does (config validation warns about it).
  }
  return null;
}

function resolvers(list: readonly string[]): DNSResolver[] {
  return list.map(resolverFor).filter((r): r is DNSResolver => r !== null);
}

/**
 * The in-addr.arpa zones covering an IPv4 prefix, at octet granularity (RFC 1035 style, no
 * RFC 2317 classless delegation): 100.64.0.0/10 → 64.100.in-addr.arpa … 127.100.in-addr.arpa;
 * a prefix on an octet boundary is one zone (172.16.0.0/16 → 16.172.in-addr.arpa).
 */
export function ipv4ReverseZones(prefix: Prefix): string[] {
  const octets = [24n, 16n, 8n, 0n].map((s) => Number((prefix.addr >> s) & 0xffn));
  const whole = Math.floor(prefix.bits / 8);
  const base = octets.slice(0, whole).reverse();
  if (prefix.bits % 8 === 0) return [[...base, "in-addr.arpa"].join(".")];
  const span = 1 << (8 - (prefix.bits % 8));
  const zones: string[] = [];
  for (let i = octets[whole]; i < octets[whole] + span; i++) {
    zones.push([i, ...base].join(".") + ".in-addr.arpa");
  }
  return zones;
}

/** The ip6.arpa zones covering an IPv6 prefix, at nibble granularity. */
export function ipv6ReverseZones(prefix: Prefix): string[] {
  const hex = prefix.addr.toString(16).padStart(32, "0");
  const fixed = [...hex.slice(0, Math.floor(prefix.bits / 4))].reverse();
  const extraBits = prefix.bits % 4;
  if (extraBits === 0) return [[...fixed, "ip6.arpa"].join(".")];
  const zones: string[] = [];
  const first = parseInt(hex[Math.floor(prefix.bits / 4)], 16);
  for (let i = 0; i < 1 << (4 - extraBits); i++) {
    zones.push([(first + i).toString(16), ...fixed, "ip6.arpa"].join("."));
  }
  return zones;
}

function extraRecord(r: DnsExtraRecord): { Name: string; Type?: string; Value: string } | null {
  const type = r.type.toUpperCase();
  if (type !== "" && type !== "A" && type !== "AAAA") return null;
  const ip = parseIP(r.value);
  if (!ip || (type === "A" && ip.family !== 4) || (type === "AAAA" && ip.family !== 6)) return null;
  return { Name: r.name, ...(type ? { Type: type } : {}), Value: formatIP(ip) };
}

/**
 * The DNSConfig for the tailnet. `extraRecords` overrides the configured list (the hot-reloaded
 * extra_records_path file). Returns a fresh object each call.
 */
export function buildDnsConfig(
  dns: DnsSettings,
  prefixes: Config["prefixes"],
  extraRecords: readonly DnsExtraRecord[] = dns.extraRecords,
): DNSConfig {
  const cfg: DNSConfig = { Proxied: dns.magicDns };
  const global = resolvers(dns.nameservers.global);
  if (global.length > 0) {
    if (dns.overrideLocalDns) cfg.Resolvers = global;
    else cfg.FallbackResolvers = global;
  }
  const routes: Record<string, DNSResolver[]> = {};
  for (const [domain, servers] of Object.entries(dns.nameservers.split)) {
    routes[domain] = resolvers(servers);
  }
  if (dns.magicDns) {
    if (dns.baseDomain) routes[dns.baseDomain] ??= [];
    const v4 = prefixes.v4 ? parsePrefix(prefixes.v4) : null;
    const v6 = prefixes.v6 ? parsePrefix(prefixes.v6) : null;
    for (const zone of v4 ? ipv4ReverseZones(v4) : []) routes[zone] ??= [];
    for (const zone of v6 ? ipv6ReverseZones(v6) : []) routes[zone] ??= [];
  }
  if (Object.keys(routes).length > 0) cfg.Routes = routes;
  const domains = [...(dns.baseDomain ? [dns.baseDomain] : []), ...dns.searchDomains];
  if (domains.length > 0) cfg.Domains = domains;
  const records = extraRecords.map(extraRecord).filter((r) => r !== null);
  if (records.length > 0) cfg.ExtraRecords = records;
  return cfg;
}

const NEXTDNS_DOH = "https://dns.nextdns.io";

function isNextDns(addr: string): boolean {
  return addr === NEXTDNS_DOH || addr.startsWith(NEXTDNS_DOH + "/") ||
    addr.startsWith(NEXTDNS_DOH + "?");
}

export function usesNextDns(cfg: DNSConfig): boolean {
  const all = [
    ...(cfg.Resolvers ?? []),
    ...(cfg.FallbackResolvers ?? []),
    ...Object.values(cfg.Routes ?? {}).flat(),
  ];
  return all.some((r) => isNextDns(r.Addr));
}

/**
 * Adds device metadata to NextDNS DoH resolvers, as headscale does, so the NextDNS dashboard
 * names devices. Returns a copy; `cfg` is not changed.
 */
export function withNextDnsMetadata(
  cfg: DNSConfig,
  device: { hostname: string; os: string; ip: string | null },
): DNSConfig {
  const tag = (list: DNSResolver[] | undefined) =>
    list?.map((r) => {
      if (!isNextDns(r.Addr)) return r;
      const url = new URL(r.Addr);
      url.searchParams.set("device_name", device.hostname);
      if (device.os) url.searchParams.set("device_model", device.os);
      if (device.ip) url.searchParams.set("device_ip", device.ip);
      return { ...r, Addr: url.toString() };
    });
  const out: DNSConfig = { ...cfg };
  if (cfg.Resolvers) out.Resolvers = tag(cfg.Resolvers);
  if (cfg.FallbackResolvers) out.FallbackResolvers = tag(cfg.FallbackResolvers);
  if (cfg.Routes) {
    out.Routes = Object.fromEntries(
      Object.entries(cfg.Routes).map(([k, v]) => [k, tag(v) ?? []]),
    );
  }
  return out;
}
