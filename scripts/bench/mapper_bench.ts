/**
 * Mapper costs at tailnet scale (allow-all policy, realistic node records):
 * - a full map for one node in tailnets of 1,000 and 10,000 nodes (warm fragment cache, then
 *   cold, then zstd-framed: compressed whole, or from cached compressed slices of the peer list);
 * - fanning one endpoint change (a PeerChange) and one rename (a full node) out to 10,000 open
 *   sessions (fake sinks that take the framed zstd bytes).
 *
 *   deno bench --allow-read --allow-env --allow-sys scripts/bench/mapper_bench.ts
 */
import { parseConfigText } from "../../lib/config/load.ts";
import { randomKey, TEST_DERP_MAP } from "../../lib/control/testing.ts";
import { silentLogger } from "../../lib/log/log.ts";
import { SharedMessage } from "../../lib/mapper/framing.ts";
import { Mapper } from "../../lib/mapper/mapper.ts";
import { type MapSink, Notifier } from "../../lib/mapper/notifier.ts";
import type { Change } from "../../lib/state/events.ts";
import type { NodeRecord, UserRecord } from "../../lib/store/types.ts";

const { config } = parseConfigText("", { env: {} });

/** An in-memory stand-in for State: what Mapper and Notifier read, plus change emission. */
class Tailnet {
  readonly nodes = new Map<number, NodeRecord>();
  readonly users = new Map<number, UserRecord>();
  private listeners: Array<(c: readonly Change[]) => void> = [];

  constructor(size: number) {
    for (let u = 1; u <= 10; u++) {
      this.users.set(u, {
        id: u,
        name: `user${u}`,
        displayName: `User ${u}`,
        email: `user${u}@example.com`,
        providerId: "",
        provider: "",
        profilePicUrl: "",
        createdAt: new Date(),
      });
    }
    for (let id = 1; id <= size; id++) {
      this.nodes.set(id, {
        id,
        machineKey: randomKey("mkey:"),
        nodeKey: randomKey("nodekey:"),
        discoKey: randomKey("discokey:"),
        ipv4: `100.${64 + (id >> 16)}.${(id >> 8) & 255}.${id & 255}`,
        ipv6: `fd7a:115c:a1e0::${id.toString(16)}`,
        hostname: `host-${id}`,
        givenName: `host-${id}`,
        userId: (id % 10) + 1,
        tags: [],
        authKeyId: null,
        registerMethod: "authkey",
        ephemeral: false,
        hostinfo: {
          IPNVersion: "1.96.2-t1234abcd-g5678ef01",
          BackendLogID: "f".repeat(64),
          OS: "linux",
          OSVersion: "Debian 12.5 (bookworm); kernel=6.1.0-18-amd64",
          Distro: "debian",
          DistroVersion: "12.5",
          Hostname: `host-${id}`,
          Machine: "x86_64",
          GoArch: "amd64",
          GoVersion: "go1.24.1",
          NetInfo: { PreferredDERP: 999, WorkingUDP: true, WorkingIPv6: false },
          Services: [{ Proto: "tcp", Port: 22 }, { Proto: "peerapi4", Port: 41000 }],
        },
        endpoints: [`198.51.100.${id & 255}:41641`, `10.0.${(id >> 8) & 255}.${id & 255}:41641`],
        approvedRoutes: [],
        expiry: null,
        lastSeen: new Date(),
        createdAt: new Date(),
        updatedAt: new Date(),
      });
    }
  }

  getNode = (id: number) => this.nodes.get(id);
  getUser = (id: number) => this.users.get(id);
  listNodes = () => [...this.nodes.values()];
  isOnline = (id: number) => id % 3 !== 0;
  subscribe(listener: (c: readonly Change[]) => void) {
    this.listeners.push(listener);
    return () => {
      this.listeners = this.listeners.filter((l) => l !== listener);
    };
  }
  emit(...changes: Change[]) {
    for (const l of this.listeners) l(changes);
  }
}

function setup(size: number) {
  const tailnet = new Tailnet(size);
  const mapper = new Mapper({
    state: tailnet,
    config,
    derpMap: () => TEST_DERP_MAP,
  });
  return { tailnet, mapper };
}

const small = setup(1_000);
const large = setup(10_000);
small.mapper.fullMapJson(1);
large.mapper.fullMapJson(1);
const sizes = new Map<string, number>();

Deno.bench("full map, 1,000 nodes (cached fragments)", { group: "full" }, () => {
  const json = small.mapper.fullMapJson(500)!;
  sizes.set("1k json", json.length);
});

Deno.bench("full map, 10,000 nodes (cached fragments)", { group: "full", baseline: true }, () => {
  const json = large.mapper.fullMapJson(5_000)!;
  sizes.set("10k json", json.length);
});

Deno.bench("full map, 10,000 nodes, every fragment rebuilt", { group: "full", n: 20 }, () => {
  for (const id of large.tailnet.nodes.keys()) large.mapper.invalidateNode(id);
  large.mapper.fullMapJson(5_000);
});

Deno.bench("full map, 10,000 nodes, JSON + zstd in one frame", { group: "full", n: 20 }, () => {
  const frame = new SharedMessage(large.mapper.fullMapJson(5_000)!).frame(true);
  sizes.set("10k zstd, one frame", frame.byteLength);
});

let touch = 0;
Deno.bench(
  "full map, 10,000 nodes, zstd from cached slices (1 node changed since last)",
  { group: "full" },
  () => {
    large.mapper.invalidateNode(1 + (touch++ % 10_000));
    const frame = large.mapper.fullMapMessage(5_000)!.frame(true);
    sizes.set("10k zstd, slices", frame.byteLength);
  },
);

// ---- fan-out to 10,000 sessions ------------------------------------------------------------

class ByteSink implements MapSink {
  bytes = 0;
  constructor(readonly nodeId: number) {}
  send(msg: SharedMessage) {
    this.bytes += msg.frame(true).byteLength;
  }
  close() {}
}

const notifier = new Notifier({
  state: large.tailnet,
  mapper: large.mapper,
  log: silentLogger(),
  batchDelayMs: 3_600_000,
});
const sinks: ByteSink[] = [];
for (const id of large.tailnet.nodes.keys()) {
  const sink = new ByteSink(id);
  sinks.push(sink);
  notifier.register(sink);
}
let round = 0;

Deno.bench("fan-out: one endpoint change → 10,000 sessions", { group: "fanout" }, () => {
  const node = large.tailnet.nodes.get(42)!;
  node.endpoints = [`203.0.113.${round++ & 255}:41641`];
  large.tailnet.emit({ kind: "node-patched", nodeId: 42, patch: { endpoints: node.endpoints } });
  notifier.flush();
});

Deno.bench("fan-out: one rename (full node) → 10,000 sessions", { group: "fanout" }, () => {
  const node = large.tailnet.nodes.get(43)!;
  node.givenName = `renamed-${round++}`;
  large.tailnet.emit({ kind: "node-updated", nodeId: 43 });
  notifier.flush();
});

Deno.bench(
  "fan-out: 100 endpoint changes in one window → 10,000 sessions",
  { group: "fanout", n: 50 },
  () => {
    const changes: Change[] = [];
    for (let id = 100; id < 200; id++) {
      const node = large.tailnet.nodes.get(id)!;
      node.endpoints = [`203.0.113.${round++ & 255}:41641`];
      changes.push({ kind: "node-patched", nodeId: id, patch: { endpoints: node.endpoints } });
    }
    large.tailnet.emit(...changes);
    notifier.flush();
  },
);

globalThis.addEventListener("unload", () => {
  notifier.close();
  console.log("sizes:", Object.fromEntries(sizes));
});
