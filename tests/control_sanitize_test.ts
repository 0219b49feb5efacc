import assert from "node:assert/strict";
import fc from "fast-check";
import {
  isKeyText,
  sanitizeEndpoints,
  sanitizeHostinfo,
  usableKey,
} from "../lib/control/sanitize.ts";

Deno.test("sanitize: key text forms", () => {
  const hex = "ab".repeat(32);
  assert.ok(isKeyText("nodekey:" + hex, "nodekey:"));
  assert.ok(!isKeyText("nodekey:" + hex.toUpperCase(), "nodekey:"));
  assert.ok(!isKeyText("mkey:" + hex, "nodekey:"));
  assert.ok(!isKeyText("nodekey:" + hex.slice(2), "nodekey:"));
  assert.ok(!isKeyText(42, "nodekey:"));
  assert.equal(usableKey("discokey:" + "0".repeat(64), "discokey:"), null);
  assert.equal(usableKey("discokey:" + hex, "discokey:"), "discokey:" + hex);
});

Deno.test("sanitize: endpoints keep what Go's netip.AddrPort parses, minus zones and link-local", () => {
  assert.deepEqual(
    sanitizeEndpoints([
      "192.0.2.1:41641",
      "[2001:db8::1]:41641",
      "192.0.2.1:41641",
      "[fe80::1]:1",
      "[fe80::1%eth0]:1",
      "2001:db8::1:41641",
      "[192.0.2.1]:1",
      "192.0.2.1:65536",
      "host.example:80",
      "192.0.2.300:1",
      7,
    ]),
    ["192.0.2.1:41641", "[2001:db8::1]:41641"],
  );
  assert.deepEqual(sanitizeEndpoints("1.2.3.4:5"), []);
  const many = Array.from({ length: 500 }, (_, i) => `10.0.${i >> 8}.${i & 255}:1`);
  assert.equal(sanitizeEndpoints(many).length, 64);
});

Deno.test("sanitize: Hostinfo keeps known, well-typed fields under their Go names", () => {
  const h = sanitizeHostinfo({
    hostname: "laptop", // Go matches names case-insensitively
    OS: "linux",
    ShieldsUp: "yes",
    Userspace: true,
    RoutableIPs: ["10.0.0.0/24", "nope", "10.0.0.1"],
    Services: [{ Proto: "tcp", Port: 22, Description: "ssh" }, { Proto: "tcp", Port: 70000 }],
    NetInfo: { PreferredDERP: 999, DERPLatency: { "999-v4": 0.01, bad: "x" }, WorkingUDP: "x" },
    sshHostKeys: ["ssh-ed25519 AAAA"],
    PushDeviceToken: "secret",
    Unknown: { a: 1 },
    Location: { City: "Oslo", Latitude: "north" },
  });
  assert.deepEqual(h, {
    Hostname: "laptop",
    OS: "linux",
    Userspace: true,
    RoutableIPs: ["10.0.0.0/24"],
    Services: [{ Proto: "tcp", Port: 22, Description: "ssh" }],
    NetInfo: { PreferredDERP: 999, DERPLatency: { "999-v4": 0.01 } },
    sshHostKeys: ["ssh-ed25519 AAAA"],
    Location: { City: "Oslo" },
  });
  // JSON.parse("-0") is -0; Go has no negative zero, and the stored copy must round-trip.
  const zero = sanitizeHostinfo(JSON.parse(
    '{"NetInfo":{"PreferredDERP":-0,"DERPLatency":{"1-v4":-0}},"Services":[{"Proto":"tcp","Port":-0}]}',
  ));
  assert.ok(Object.is(zero?.NetInfo?.PreferredDERP, 0));
  assert.deepEqual(JSON.parse(JSON.stringify(zero)), zero);
  assert.equal(sanitizeHostinfo(null), null);
  assert.equal(sanitizeHostinfo([1]), null);
});

Deno.test("sanitize: any JSON input gives a Hostinfo whose known fields have the right types", () => {
  fc.assert(
    fc.property(fc.jsonValue(), fc.jsonValue(), (a, b) => {
      const h = sanitizeHostinfo({
        Hostname: a,
        NetInfo: { PreferredDERP: b, DERPLatency: { x: b } },
        OS: b,
        Services: [{ Proto: "tcp", Port: b }],
      });
      if (h === null) return;
      assert.ok(h.Hostname === undefined || typeof h.Hostname === "string");
      assert.ok(h.OS === undefined || typeof h.OS === "string");
      const derp = h.NetInfo?.PreferredDERP;
      assert.ok(derp === undefined || Number.isSafeInteger(derp));
      assert.deepEqual(JSON.parse(JSON.stringify(h)), h);
    }),
  );
});
