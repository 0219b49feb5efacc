import assert from "node:assert/strict";
import { AddressExhaustedError, IpAllocator } from "../lib/state/ip_allocator.ts";

Deno.test("ip allocator: sequential from the start of each prefix, one of each family", () => {
  const a = new IpAllocator({
    v4: "100.64.0.0/10",
    v6: "fd7a:115c:a1e0::/48",
    strategy: "sequential",
  });
  assert.deepEqual(a.allocate(), { ipv4: "100.64.0.1", ipv6: "fd7a:115c:a1e0::1" });
  assert.deepEqual(a.allocate(), { ipv4: "100.64.0.2", ipv6: "fd7a:115c:a1e0::2" });
});

Deno.test("ip allocator: skips used, reserved and broadcast addresses, and reuses freed ones", () => {
  const a = new IpAllocator({ v4: "100.100.100.96/29", v6: "", strategy: "sequential" });
  a.markUsed({ ipv4: "100.100.100.97", ipv6: null });
  const got = [a.allocate().ipv4, a.allocate().ipv4, a.allocate().ipv4, a.allocate().ipv4];
  // .96 network, .97 used, .100 is quad-100, .103 broadcast.
  assert.deepEqual(got, ["100.100.100.98", "100.100.100.99", "100.100.100.101", "100.100.100.102"]);
  assert.throws(() => a.allocate(), AddressExhaustedError);
  a.release({ ipv4: "100.100.100.99", ipv6: null });
  assert.equal(a.allocate().ipv4, "100.100.100.99");
});

Deno.test("ip allocator: the ChromeOS VM range and the IPv6 service address are never given", () => {
  const a = new IpAllocator({
    v4: "100.115.92.0/22",
    v6: "fd7a:115c:a1e0::50/125",
    strategy: "sequential",
  });
  const first = a.allocate();
  assert.equal(first.ipv4, "100.115.94.0");
  const v6s = [first.ipv6, a.allocate().ipv6, a.allocate().ipv6];
  assert.deepEqual(v6s, ["fd7a:115c:a1e0::51", "fd7a:115c:a1e0::52", "fd7a:115c:a1e0::54"]);
});

Deno.test("ip allocator: random strategy never hands out a duplicate", () => {
  const a = new IpAllocator({
    v4: "100.64.0.0/24",
    v6: "fd7a:115c:a1e0::/120",
    strategy: "random",
  });
  const seen = new Set<string>();
  for (let i = 0; i < 254; i++) {
    const { ipv4 } = a.allocate();
    assert.ok(ipv4 && !seen.has(ipv4), `duplicate ${ipv4}`);
    seen.add(ipv4);
  }
  assert.throws(() => a.allocate(), AddressExhaustedError);
});
