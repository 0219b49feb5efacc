/**
 * Ports, protocols, destinations with ports, aliases and Go durations.
 */

import assert from "node:assert/strict";
import { parsePolicy, PolicyError } from "../lib/policy/mod.ts";
import {
  formatGoDuration,
  parseAlias,
  parseDestination,
  parseGoDuration,
  parsePorts,
  parseProtocol,
  splitHostPort,
} from "../lib/policy/syntax.ts";

Deno.test("ports: *, single, ranges, lists", () => {
  assert.deepEqual(parsePorts("*"), [{ first: 0, last: 65535 }]);
  assert.deepEqual(parsePorts("22"), [{ first: 22, last: 22 }]);
  assert.deepEqual(parsePorts("80-90"), [{ first: 80, last: 90 }]);
  assert.deepEqual(parsePorts("22,80-90,443"), [
    { first: 22, last: 22 },
    { first: 80, last: 90 },
    { first: 443, last: 443 },
  ]);
  assert.deepEqual(parsePorts("0-65535"), [{ first: 0, last: 65535 }]);
});

Deno.test("ports: malformed lists are refused with a reason", () => {
  assert.throws(() => parsePorts("ssh"), /invalid first integer/);
  assert.throws(() => parsePorts("0"), /first port must be >0/);
  assert.throws(() => parsePorts("65536"), /port number out of range/);
  assert.throws(() => parsePorts("90-80"), /first port is greater than last port/);
  assert.throws(() => parsePorts("-1"), /invalid port range format/);
  assert.throws(() => parsePorts("1-2-3"), /invalid port range format/);
  assert.throws(() => parsePorts("22,"), /invalid first integer/);
  for (const bad of ["ssh", "0", "65536", "90-80", "-1", ""]) {
    assert.throws(() => parsePorts(bad), PolicyError);
  }
});

Deno.test("protocols: names in any case, IANA numbers, no leading zeros", () => {
  assert.equal(parseProtocol("tcp"), 6);
  assert.equal(parseProtocol("UDP"), 17);
  assert.equal(parseProtocol("icmp"), 1);
  assert.equal(parseProtocol("ipv6-icmp"), 58);
  assert.equal(parseProtocol("sctp"), 132);
  assert.equal(parseProtocol("gre"), 47);
  assert.equal(parseProtocol("47"), 47);
  assert.equal(parseProtocol("255"), 255);
  assert.throws(() => parseProtocol("256"), /out of range/);
  assert.throws(() => parseProtocol("06"), /leading 0/);
  assert.throws(() => parseProtocol("0"), /leading 0/);
  assert.throws(() => parseProtocol("*"), /proto name "\*" not known/);
  assert.throws(() => parseProtocol("carrier-pigeon"), /invalid protocol number/);
});

Deno.test("protocols: in rules, IPProto carries the number; ports only for tcp/udp/sctp", () => {
  const acl = (proto: string, dst: string) =>
    parsePolicy(JSON.stringify({ acls: [{ action: "accept", proto, src: ["*"], dst: [dst] }] }))!;
  assert.deepEqual(acl("udp", "*:53").grants[0].ip, [{
    protocols: [17],
    ports: [{ first: 53, last: 53 }],
  }]);
  assert.deepEqual(acl("47", "*:*").grants[0].ip[0].protocols, [47]);
  assert.throws(() => acl("gre", "*:22"), /protocol does not support specific ports/);
  const grant = parsePolicy(
    JSON.stringify({
      grants: [{ src: ["*"], dst: ["*"], ip: ["tcp:22", "udp:53", "443", "*", "icmp:*"] }],
    }),
  )!;
  assert.deepEqual(grant.grants[0].ip, [
    { protocols: [6], ports: [{ first: 22, last: 22 }] },
    { protocols: [17], ports: [{ first: 53, last: 53 }] },
    { ports: [{ first: 443, last: 443 }] },
    { ports: [{ first: 0, last: 65535 }] },
    { protocols: [1], ports: [{ first: 0, last: 65535 }] },
  ]);
});

Deno.test("destinations: alias:ports, IPv6 with and without brackets", () => {
  assert.deepEqual(splitHostPort("tag:web:80"), ["tag:web", "80"]);
  assert.deepEqual(splitHostPort("[fd7a::1]:22"), ["fd7a::1", "22"]);
  assert.deepEqual(splitHostPort("[fd7a::]/48:22"), ["fd7a::/48", "22"]);
  assert.deepEqual(splitHostPort("fd7a::1:22"), ["fd7a::1", "22"]);
  assert.throws(() => splitHostPort("[1.2.3.4]:22"), /square brackets/);
  assert.throws(() => splitHostPort("nocolon"), /must contain a colon/);
  const d = parseDestination("10.0.0.0/8:80,443");
  assert.equal(d.alias.kind, "prefix");
  assert.equal(d.ports.length, 2);
  assert.throws(
    () => parseDestination("tag:web:ssh"),
    /dst="tag:web:ssh": port range "ssh": invalid first integer/,
  );
});

Deno.test("aliases: every kind, whitespace trimmed", () => {
  assert.deepEqual(parseAlias(" * "), { kind: "wildcard" });
  assert.deepEqual(parseAlias("alice@example.com"), { kind: "user", token: "alice@example.com" });
  assert.deepEqual(parseAlias("alice@"), { kind: "user", token: "alice@" });
  assert.deepEqual(parseAlias("user:*@example.com"), { kind: "userDomain", domain: "example.com" });
  assert.deepEqual(parseAlias("group:eng"), { kind: "group", name: "group:eng" });
  assert.deepEqual(parseAlias("tag:web "), { kind: "tag", name: "tag:web" });
  assert.deepEqual(parseAlias("autogroup:member"), { kind: "autogroup", name: "member" });
  assert.deepEqual(parseAlias("webserver"), { kind: "host", name: "webserver" });
  assert.equal(parseAlias("100.64.0.1").kind, "prefix");
  assert.equal(parseAlias("fd7a:115c:a1e0::/48").kind, "prefix");
  assert.throws(() => parseAlias("autogroup:bogus"), /unknown autogroup/);
  assert.throws(() => parseAlias("tag:1x"), /must start with a letter/);
  assert.throws(() => parseAlias("%bogus%"), /"%bogus%": invalid address/);
  assert.throws(() => parseAlias("10.0.0.0/33"), /invalid address/);
  assert.throws(() => parseAlias("300.1.1.1"), /invalid address/);
});

Deno.test("durations: Go syntax both ways", () => {
  assert.equal(parseGoDuration("1h"), 3600e9);
  assert.equal(parseGoDuration("1h30m"), 5400e9);
  assert.equal(parseGoDuration("1.5h"), 5400e9);
  assert.equal(parseGoDuration("0"), 0);
  assert.equal(parseGoDuration("500ms"), 5e8);
  assert.equal(parseGoDuration("-2m"), -120e9);
  assert.throws(() => parseGoDuration("abc"), /time: invalid duration "abc"/);
  assert.throws(() => parseGoDuration("1d"), /invalid duration/);
  assert.throws(() => parseGoDuration(""), /invalid duration/);
  assert.equal(formatGoDuration(168 * 3600e9 + 1e9), "168h0m1s");
  assert.equal(formatGoDuration(200 * 3600e9), "200h0m0s");
  assert.equal(formatGoDuration(90e9), "1m30s");
  assert.equal(formatGoDuration(0), "0s");
});
