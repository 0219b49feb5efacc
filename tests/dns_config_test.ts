import assert from "node:assert/strict";
import { parseConfigText } from "../lib/config/load.ts";
import {
  buildDnsConfig,
  ipv4ReverseZones,
  ipv6ReverseZones,
  nodeFqdn,
  usesNextDns,
  withNextDnsMetadata,
} from "../lib/dns/dns_config.ts";
import { parsePrefix } from "../lib/net/ip.ts";

Deno.test("dns: reverse zones follow the prefix at octet / nibble granularity", () => {
  const cgnat = ipv4ReverseZones(parsePrefix("100.64.0.0/10")!);
  assert.equal(cgnat.length, 64);
  assert.equal(cgnat[0], "64.100.in-addr.arpa");
  assert.equal(cgnat[63], "127.100.in-addr.arpa");
  assert.deepEqual(ipv4ReverseZones(parsePrefix("172.16.0.0/16")!), ["16.172.in-addr.arpa"]);
  assert.equal(ipv4ReverseZones(parsePrefix("10.1.0.0/17")!).length, 128);
  assert.deepEqual(ipv4ReverseZones(parsePrefix("10.1.2.3/32")!), ["3.2.1.10.in-addr.arpa"]);
  assert.deepEqual(
    ipv6ReverseZones(parsePrefix("fd7a:115c:a1e0::/48")!),
    ["0.e.1.a.c.5.1.1.a.7.d.f.ip6.arpa"],
  );
  assert.deepEqual(ipv6ReverseZones(parsePrefix("fd00::/7")!), ["c.f.ip6.arpa", "d.f.ip6.arpa"]);
});

Deno.test("dns: headscale's derivation of DNSConfig from the dns section", () => {
  const { config } = parseConfigText(
    `
dns:
  magic_dns: true
  base_domain: ts.example.org
  override_local_dns: true
  nameservers:
    global: [1.1.1.1, "https://dns.nextdns.io/abc123"]
    split:
      corp.example: [10.0.0.53]
  search_domains: [corp.example]
  extra_records:
    - { name: grafana.ts.example.org, type: A, value: 100.64.0.9 }
`,
    { env: {} },
  );
  const cfg = buildDnsConfig(config.dns, config.prefixes);
  assert.equal(cfg.Proxied, true);
  assert.deepEqual(cfg.Resolvers, [{ Addr: "1.1.1.1" }, { Addr: "https://dns.nextdns.io/abc123" }]);
  assert.equal(cfg.FallbackResolvers, undefined);
  assert.deepEqual(cfg.Domains, ["ts.example.org", "corp.example"]);
  assert.deepEqual(cfg.Routes!["corp.example"], [{ Addr: "10.0.0.53" }]);
  assert.deepEqual(cfg.Routes!["ts.example.org"], []);
  assert.deepEqual(cfg.Routes!["64.100.in-addr.arpa"], []);
  assert.deepEqual(cfg.Routes!["0.e.1.a.c.5.1.1.a.7.d.f.ip6.arpa"], []);
  assert.deepEqual(cfg.ExtraRecords, [
    { Name: "grafana.ts.example.org", Type: "A", Value: "100.64.0.9" },
  ]);
  // Records from a hot-reloaded file replace the configured ones; unusable ones are dropped.
  const reloaded = buildDnsConfig(config.dns, config.prefixes, [
    { name: "db.ts.example.org", type: "AAAA", value: "fd7a:115c:a1e0::9" },
    { name: "mail.ts.example.org", type: "MX", value: "100.64.0.9" },
    { name: "v4.ts.example.org", type: "AAAA", value: "100.64.0.9" },
  ]);
  assert.deepEqual(reloaded.ExtraRecords, [
    { Name: "db.ts.example.org", Type: "AAAA", Value: "fd7a:115c:a1e0::9" },
  ]);
  // Routes survive JSON as [] (not null): the client's Clone drops null routes.
  assert.match(JSON.stringify(cfg), /"ts\.example\.org":\[\]/);

  assert.ok(usesNextDns(cfg));
  const tagged = withNextDnsMetadata(cfg, { hostname: "laptop", os: "linux", ip: "100.64.0.1" });
  const url = new URL(tagged.Resolvers![1].Addr);
  assert.equal(url.pathname, "/abc123");
  assert.equal(url.searchParams.get("device_name"), "laptop");
  assert.equal(url.searchParams.get("device_ip"), "100.64.0.1");
  assert.equal(cfg.Resolvers![1].Addr, "https://dns.nextdns.io/abc123", "input unchanged");
});

Deno.test("dns: without override, global resolvers are fallbacks; without MagicDNS no routes", () => {
  const { config } = parseConfigText(
    `
dns:
  magic_dns: false
  base_domain: example.net
  nameservers:
    global: [9.9.9.9]
`,
    { env: {} },
  );
  const cfg = buildDnsConfig(config.dns, config.prefixes);
  assert.equal(cfg.Proxied, false);
  assert.equal(cfg.Resolvers, undefined);
  assert.deepEqual(cfg.FallbackResolvers, [{ Addr: "9.9.9.9" }]);
  assert.equal(cfg.Routes, undefined);
  assert.equal(usesNextDns(cfg), false);
  assert.equal(nodeFqdn("web-1", "example.net"), "web-1.example.net.");
});
