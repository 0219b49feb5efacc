/**
 * Policy engine at tailnet scale: 10,000 nodes, 200 users, 50 groups, 100 tags, ~300 rules
 * (ACLs and grants over groups, tags, users, a hosts entry, autogroup:self, app grants) plus
 * SSH rules, a few subnet routers and exit nodes (lib/policy/synthetic.ts).
 *
 * - whole tailnet: parse + compile + every node's packet filter and peer set, from cold;
 * - the same with SSH policies;
 * - one node joining, changing tags, leaving: the engine update and the affected-id report;
 * - one change plus recomputing every affected node's filter and peers.
 *
 *   deno bench --allow-read scripts/bench/policy_bench.ts
 */
import { parsePolicy, PolicyEngine, type PolicyNode } from "../../lib/policy/mod.ts";
import { syntheticTailnet } from "../../lib/policy/synthetic.ts";

const SPEC = { nodes: 10_000, users: 200, groups: 50, tags: 100, rules: 300, seed: 7 };
const tailnet = syntheticTailnet(SPEC);

function wholeTailnet(withSSH: boolean): PolicyEngine {
  const engine = new PolicyEngine(parsePolicy(tailnet.policy), tailnet.users, tailnet.nodes);
  for (const n of tailnet.nodes) {
    engine.filterFor(n.id);
    void engine.peersOf(n.id).size;
    if (withSSH) engine.sshPolicyFor(n.id);
  }
  return engine;
}

Deno.bench({
  name: "whole tailnet: compile + every filter and peer set",
  group: "tailnet",
  n: 5,
  warmup: 1,
  fn: () => {
    wholeTailnet(false);
  },
});

Deno.bench({
  name: "whole tailnet: compile + every filter, peer set and SSH policy",
  group: "tailnet",
  n: 5,
  warmup: 1,
  fn: () => {
    wholeTailnet(true);
  },
});

// One warm engine for the incremental benchmarks (its caches filled, as in a running server).
const engine = wholeTailnet(true);
let nextId = 1_000_000;
let flip = 0;
let reportSize = 0;

Deno.bench({
  name: "one node joins (update + affected ids)",
  group: "change",
  fn: () => {
    reportSize = engine.upsertNode(tailnet.makeNode(nextId++)).length;
  },
});

Deno.bench({
  name: "one node changes tags (update + affected ids)",
  group: "change",
  fn: () => {
    const n: PolicyNode = tailnet.nodes[(flip * 37) % tailnet.nodes.length];
    const tags = [tailnet.tags[flip++ % tailnet.tags.length]];
    reportSize = engine.upsertNode({ ...n, userId: undefined, tags }).length;
  },
});

Deno.bench({
  name: "one node leaves (update + affected ids)",
  group: "change",
  fn: (b) => {
    const n = tailnet.nodes[(flip++ * 53) % tailnet.nodes.length];
    b.start();
    reportSize = engine.removeNode(n.id).length;
    b.end();
    engine.upsertNode(n);
  },
});

Deno.bench({
  name: "one node joins, then every affected filter and peer set recomputed",
  group: "change",
  n: 50,
  fn: () => {
    for (const id of engine.upsertNode(tailnet.makeNode(nextId++))) {
      engine.filterFor(id);
      void engine.peersOf(id).size;
    }
  },
});

globalThis.addEventListener("unload", () => {
  console.log(
    `(last change reported ${reportSize} affected nodes; tailnet ${engine.nodeIds().length} nodes)`,
  );
});
