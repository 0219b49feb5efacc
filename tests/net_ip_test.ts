import assert from "node:assert/strict";
import {
  formatIP,
  formatPrefix,
  parseIP,
  parsePrefix,
  prefixContains,
  prefixLast,
  prefixWithin,
} from "../lib/net/ip.ts";

Deno.test("ip: parse and format round-trip v4 and v6 canonically", () => {
  for (
    const [input, canonical] of [
      ["100.64.0.1", "100.64.0.1"],
      ["fd7a:115c:a1e0::1", "fd7a:115c:a1e0::1"],
      ["fd7a:115c:a1e0:0:0:0:0:1", "fd7a:115c:a1e0::1"],
      ["::", "::"],
      ["::ffff:1.2.3.4", "::ffff:102:304"],
      ["2001:db8:0:0:1:0:0:1", "2001:db8::1:0:0:1"],
    ]
  ) {
    assert.equal(formatIP(parseIP(input)!), canonical, input);
  }
});

Deno.test("ip: invalid addresses are refused", () => {
  for (const bad of ["1.2.3", "256.1.1.1", "01.2.3.4", "1::2::3", "fe80::1%eth0", "x", ""]) {
    assert.equal(parseIP(bad), null, bad);
  }
});

Deno.test("ip: prefixes mask host bits and test containment", () => {
  const p = parsePrefix("100.64.7.9/10")!;
  assert.equal(formatPrefix(p), "100.64.0.0/10");
  assert.ok(prefixContains(p, parseIP("100.127.255.255")!));
  assert.ok(!prefixContains(p, parseIP("100.128.0.0")!));
  assert.equal(formatIP({ family: 4, value: prefixLast(p) }), "100.127.255.255");
  assert.ok(prefixWithin(parsePrefix("100.64.0.0/16")!, p));
  assert.ok(!prefixWithin(parsePrefix("100.0.0.0/8")!, p));
  assert.equal(parsePrefix("10.0.0.0/33"), null);
  assert.equal(formatPrefix(parsePrefix("fd7a:115c:a1e0::/48")!), "fd7a:115c:a1e0::/48");
});
