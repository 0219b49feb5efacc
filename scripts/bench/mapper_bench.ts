/**
 * Mapper costs at tailnet scale (allow-all policy, realistic node records):
 * - a full map for one node in tailnets of 1,000 and 10,000 nodes (warm fragment cache, then
 *   cold, then zstd-framed: compressed whole, or from cached compressed slices of the peer list);
 * - fanning one endpoint change (a PeerChange) and one rename (a full node) out to 10,000 open
 *   sessions (fake sinks that take the framed zstd bytes);
 * - policy changes through the real engine over 10,000 sessions (synthetic tailnet: 200 users,
 *   50 groups, 100 tags, ~300 rules): one rule changed, one node's tags changed, and one node's
 *   hostinfo changed under an allow-all engine policy (every session compared). Each is shown
 *   next to the engine's own work for the same change, so the notifier's share is visible;
 *   bytes sent, sessions reached and the peer-set memory are printed at the end.
 *
 *   deno bench --allow-read --allow-env --allow-sys scripts/bench/mapper_bench.ts
 */
import { parseConfigText } from "../../lib/config/load.ts";
import { randomKey, TEST_DERP_MAP } from "../../tests/helpers/control.ts";
import { silentLogger } from "../../lib/log/log.ts";
import { SharedMessage } from "../../lib/mapper/framing.ts";
import { Mapper } from "../../lib/mapper/mapper.ts";
import { type MapSink, Notifier } from "../../lib/mapper/notifier.ts";
import { policyEngineView } from "../../lib/mapper/policy_engine_view.ts";
import { parsePolicy, PolicyEngine, type PolicyNode } from "../../lib/policy/mod.ts";
import { syntheticTailnet } from "../../lib/policy/synthetic.ts";
import type { Change } from "../../lib/state/events.ts";
import type { NodeRecord, UserRecord } from "../../lib/store/types.ts";
import { toPolicyNode } from "../../lib/policy_manager/manager.ts";

const { config } = parseConfigText("", { env: {} });

function makeRecord(id: number, userId: number): NodeRecord {
  return {
    id,
    machineKey: randomKey("mkey:"),
    nodeKey: randomKey("nodekey:"),
    discoKey: randomKey("discokey:"),
    ipv4: `100.${64 + (id >> 16)}.${(id >> 8) & 255}.${id & 255}`,
    ipv6: `fd7a:115c:a1e0::${id.toString(16)}`,
    hostname: `host-${id}`,
    givenName: `host-${id}`,
    userId,
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
  };
}

/** An in-memory stand-in for State: what Mapper and Notifier read, plus change emission. */
class Tailnet {
  readonly nodes = new Map<number, NodeRecord>();
  readonly users = new Map<number, UserRecord>();
  private listeners: Array<(c: readonly Change[]) => void> = [];

  /** The same tailnet as the policy engine sees it (tags, users, addresses). */
  static fromPolicyNodes(nodes: readonly PolicyNode[], users: number): Tailnet {
    const t = new Tailnet(0, users);
    for (const p of nodes) {
      const n = makeRecord(p.id, p.userId ?? 1);
      n.ipv4 = p.ipv4 ?? null;
      n.ipv6 = p.ipv6 ?? null;
      n.tags = [...p.tags];
      n.userId = p.tags.length > 0 ? null : p.userId ?? null;
      n.approvedRoutes = [...p.approvedRoutes];
      if (p.advertisedRoutes.length > 0) {
        n.hostinfo = { ...n.hostinfo, RoutableIPs: p.advertisedRoutes };
      }
      t.nodes.set(p.id, n);
    }
    return t;
  }

  constructor(size: number, userCount = 10) {
    for (let u = 1; u <= userCount; u++) {
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
    for (let id = 1; id <= size; id++) this.nodes.set(id, makeRecord(id, (id % 10) + 1));
  }

  getNode = (id: number) => this.nodes.get(id);
  getUser = (id: number) => this.users.get(id);
  listNodes = () => [...this.nodes.values()];
  isOnline = (id: number) => id % 3 !== 0;
  primaryRoutesOf = (_id: number): readonly string[] => [];
  capVersionOf = (_id: number): number | undefined => undefined;
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
    const frame = large.mapper.fullMapMessages(5_000)![0].frame(true);
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
large.tailnet.subscribe((changes) => {
  large.mapper.apply(changes);
  notifier.apply(changes);
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

// ---- policy changes through the engine, 10,000 sessions -------------------------------------

const SPEC = { nodes: 10_000, users: 200, groups: 50, tags: 100, rules: 300, seed: 7 };
const synth = syntheticTailnet(SPEC);
/** The synthetic policy with its first ACL's source group swapped: one rule changed. */
const policyA = synth.policy;
const policyB = (() => {
  const p = JSON.parse(synth.policy);
  const groups = Object.keys(p.groups);
  const first = p.acls.findIndex((a: { src: string[] }) => a.src[0].startsWith("group:"));
  const src = p.acls[first].src[0];
  p.acls[first].src = [groups[(groups.indexOf(src) + 1) % groups.length]];
  return JSON.stringify(p);
})();
const parsedA = parsePolicy(policyA);
const parsedB = parsePolicy(policyB);
const stats = new Map<string, string>();

class CountingSink implements MapSink {
  bytes = 0;
  readonly got: SharedMessage[] = [];
  constructor(readonly nodeId: number) {}
  send(msg: SharedMessage) {
    this.bytes += msg.frame(true).byteLength;
    this.got.push(msg);
  }
  close() {}
}

/** Mapper + notifier over `net` with the engine plugged in, a session per node. */
function engineSessions(net: Tailnet, engine: PolicyEngine) {
  const mapper = new Mapper({
    state: net,
    config,
    derpMap: () => TEST_DERP_MAP,
    policy: policyEngineView(engine),
  });
  const n = new Notifier({ state: net, mapper, log: silentLogger(), batchDelayMs: 3_600_000 });
  net.subscribe((changes) => {
    mapper.apply(changes);
    n.apply(changes);
  });
  const started = performance.now();
  const sinks: CountingSink[] = [];
  for (const id of net.nodes.keys()) {
    const sink = new CountingSink(id);
    sinks.push(sink);
    n.register(sink);
  }
  const registerMs = performance.now() - started;
  return {
    mapper,
    notifier: n,
    registerMs,
    /** Flushes and sums what the sessions got. */
    flush(label: string) {
      for (const s of sinks) {
        s.bytes = 0;
        s.got.length = 0;
      }
      n.flush();
      let reached = 0, bytes = 0;
      const distinct = new Set<SharedMessage>();
      for (const s of sinks) {
        if (s.got.length > 0) reached++;
        bytes += s.bytes;
        for (const m of s.got) distinct.add(m);
      }
      stats.set(
        label,
        `${reached} sessions reached, ${distinct.size} distinct messages, ${bytes} zstd bytes sent`,
      );
    },
  };
}

const policyNet = Tailnet.fromPolicyNodes(synth.nodes, SPEC.users);
const policyEngine = new PolicyEngine(parsedA, synth.users, synth.nodes);
const ruled = engineSessions(policyNet, policyEngine);
stats.set(
  "synthetic policy: register 10,000 sessions",
  `${ruled.registerMs.toFixed(0)} ms; peer arrays ${
    JSON.stringify(ruled.notifier.policySync.peerMemory())
  }`,
);
let flipPolicy = false;

Deno.bench("engine alone: one rule changed + every filter, SSH policy and peer set", {
  group: "policy change",
  n: 5,
  warmup: 1,
}, () => {
  const e = new PolicyEngine(parsedA, synth.users, synth.nodes);
  e.setPolicy(parsedB);
  for (const n of synth.nodes) {
    e.filterFor(n.id);
    e.sshPolicyFor(n.id);
    void e.peersOf(n.id).size;
  }
});

Deno.bench("policy change: one rule changed → deltas for 10,000 sessions (engine included)", {
  group: "policy change",
  n: 5,
  warmup: 1,
}, () => {
  flipPolicy = !flipPolicy;
  policyEngine.setPolicy(flipPolicy ? parsedB : parsedA);
  ruled.mapper.setPolicy(policyEngineView(policyEngine));
  policyNet.emit({ kind: "policy-changed" });
  ruled.flush("policy change: one rule changed");
});

// The old way, for comparison: a full map for each session (1,000 of the 10,000 here).
Deno.bench("before: full maps for 1,000 of the 10,000 sessions (synthetic policy)", {
  group: "policy change",
  n: 3,
}, () => {
  let bytes = 0;
  for (let id = 1; id <= 1_000; id++) {
    bytes += ruled.mapper.fullMapMessages(id)![0].frame(true).length;
  }
  stats.set("before: full maps for 1,000 sessions", `${bytes} zstd bytes`);
});

let tagFlip = 0;
/** A user's node becomes tagged, then untagged again (alternating). */
function retag(): { id: number; affected: number[] } {
  const p = synth.nodes.find((n) => n.tags.length === 0 && n.advertisedRoutes.length === 0)!;
  const tagged = tagFlip++ % 2 === 0;
  const next: PolicyNode = tagged ? { ...p, userId: undefined, tags: [synth.tags[3]] } : p;
  const rec = policyNet.nodes.get(p.id)!;
  rec.tags = [...next.tags];
  rec.userId = next.userId ?? null;
  return { id: p.id, affected: policyEngine.upsertNode(next) };
}

Deno.bench("engine alone: one node's tags change (update + affected ids)", {
  group: "tag change",
  n: 20,
}, () => {
  retag();
});

Deno.bench("tag change: one node → deltas for the affected sessions (engine included)", {
  group: "tag change",
  n: 20,
}, () => {
  const { id, affected } = retag();
  ruled.notifier.apply([], affected);
  policyNet.emit({ kind: "node-updated", nodeId: id });
  ruled.flush(`tag change: one node (${affected.length} affected)`);
});

// Allow-all through the engine: a node change is reported as affecting every peer.
const openNet = new Tailnet(10_000);
const openEngine = new PolicyEngine(
  parsePolicy(`{ "acls": [{ "action": "accept", "src": ["*"], "dst": ["*:*"] }] }`),
  [...openNet.users.values()].map((u) => ({ id: u.id, name: u.name, email: u.email })),
  [...openNet.nodes.values()].map(toPolicyNode),
);
const open = engineSessions(openNet, openEngine);
stats.set(
  "allow-all engine: register 10,000 sessions",
  `${open.registerMs.toFixed(0)} ms; peer arrays ${
    JSON.stringify(open.notifier.policySync.peerMemory())
  }`,
);

Deno.bench("allow-all engine: one hostinfo change → 10,000 sessions compared", {
  group: "node change",
  n: 10,
  warmup: 1,
}, () => {
  const rec = openNet.nodes.get(77)!;
  rec.hostinfo = { ...rec.hostinfo, OSVersion: `build ${round++}` };
  const policyNode = openEngine.node(77)!;
  open.notifier.apply([], openEngine.upsertNode(policyNode));
  openNet.emit({ kind: "node-updated", nodeId: 77 });
  open.flush("allow-all engine: one hostinfo change");
});

globalThis.addEventListener("unload", () => {
  notifier.close();
  ruled.notifier.close();
  open.notifier.close();
  console.log("sizes:", Object.fromEntries(sizes));
  console.log("policy deltas:", Object.fromEntries(stats));
});
