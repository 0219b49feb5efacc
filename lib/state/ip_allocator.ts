/**
 * Hands out tailnet addresses from prefixes.v4 / prefixes.v6, never twice. Allocation is
 * synchronous, so two registrations racing in the event loop cannot get the same address; the
 * database's unique constraints are the second line of defence.
 */
import {
  type Family,
  formatIP,
  parseIP,
  parsePrefix,
  type Prefix,
  prefixContains,
  prefixLast,
} from "../net/ip.ts";

/** Addresses Tailscale gives meaning to: quad-100, its IPv6 twin, and ChromeOS's VM range. */
const RESERVED_V4 = parsePrefix("100.115.92.0/23")!;
const SERVICE_V4 = parseIP("100.100.100.100")!.value;
const SERVICE_V6 = parseIP("fd7a:115c:a1e0::53")!.value;

export class AddressExhaustedError extends Error {
  override name = "AddressExhaustedError";
}

class Pool {
  readonly used = new Set<bigint>();
  private cursor: bigint;
  private readonly first: bigint;
  private readonly last: bigint;

  constructor(readonly prefix: Prefix, private readonly strategy: "sequential" | "random") {
    // The network address (and for IPv4 the broadcast address) are never handed out.
    this.first = prefix.addr + 1n;
    this.last = prefix.family === 4 ? prefixLast(prefix) - 1n : prefixLast(prefix);
    this.cursor = this.first - 1n;
  }

  private reserved(v: bigint): boolean {
    if (this.prefix.family === 4) {
      return v === SERVICE_V4 || prefixContains(RESERVED_V4, { family: 4, value: v });
    }
    return v === SERVICE_V6;
  }

  private randomStart(): bigint {
    const span = this.last - this.first + 1n;
    const bytes = crypto.getRandomValues(new Uint8Array(16));
    let r = 0n;
    for (const b of bytes) r = (r << 8n) | BigInt(b);
    return this.first + (r % span);
  }

  allocate(): bigint {
    let v = this.strategy === "random" ? this.randomStart() : this.cursor + 1n;
    if (v > this.last) v = this.first;
    const start = v;
    // Bounded walk: every address is looked at at most once.
    do {
      if (!this.used.has(v) && !this.reserved(v)) {
        this.used.add(v);
        if (this.strategy === "sequential") this.cursor = v;
        return v;
      }
      v = v === this.last ? this.first : v + 1n;
    } while (v !== start);
    throw new AddressExhaustedError(
      `no free address left in ${
        formatIP({ family: this.prefix.family, value: this.prefix.addr })
      }/${this.prefix.bits}`,
    );
  }
}

export interface Addresses {
  ipv4: string | null;
  ipv6: string | null;
}

export class IpAllocator {
  private readonly pools: Partial<Record<Family, Pool>> = {};

  constructor(opts: { v4: string; v6: string; strategy: "sequential" | "random" }) {
    for (const text of [opts.v4, opts.v6]) {
      if (!text) continue;
      const prefix = parsePrefix(text);
      if (!prefix) throw new Error(`invalid prefix ${text}`);
      this.pools[prefix.family] = new Pool(prefix, opts.strategy);
    }
  }

  /** Records addresses already in use (nodes loaded from the database). */
  markUsed(addrs: Addresses): void {
    for (const text of [addrs.ipv4, addrs.ipv6]) {
      const ip = text ? parseIP(text) : null;
      if (ip) this.pools[ip.family]?.used.add(ip.value);
    }
  }

  /** Takes one address from each configured family. */
  allocate(): Addresses {
    const v4 = this.pools[4] ? this.pools[4].allocate() : null;
    let v6: bigint | null = null;
    try {
      v6 = this.pools[6] ? this.pools[6].allocate() : null;
    } catch (e) {
      if (v4 !== null) this.pools[4]!.used.delete(v4);
      throw e;
    }
    return {
      ipv4: v4 === null ? null : formatIP({ family: 4, value: v4 }),
      ipv6: v6 === null ? null : formatIP({ family: 6, value: v6 }),
    };
  }

  /** True when a prefix is configured for `family`. */
  has(family: Family): boolean {
    return this.pools[family] !== undefined;
  }

  /** Takes one address of `family` (backfilling a node that lacks one). */
  allocateOne(family: Family): string {
    const pool = this.pools[family];
    if (!pool) throw new Error(`no IPv${family} prefix is configured`);
    return formatIP({ family, value: pool.allocate() });
  }

  release(addrs: Addresses): void {
    for (const text of [addrs.ipv4, addrs.ipv6]) {
      const ip = text ? parseIP(text) : null;
      if (ip) this.pools[ip.family]?.used.delete(ip.value);
    }
  }

  isUsed(text: string): boolean {
    const ip = parseIP(text);
    return ip !== null && (this.pools[ip.family]?.used.has(ip.value) ?? false);
  }
}
