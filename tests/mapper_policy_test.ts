import assert from "node:assert/strict";
import { parseConfigText } from "../lib/config/load.ts";
import { TEST_DERP_MAP } from "./helpers/control.ts";
import { Mapper } from "../lib/mapper/mapper.ts";
import { policyEngineView } from "../lib/mapper/policy_engine_view.ts";
import { parsePolicy, PolicyEngine, type PolicyNode } from "../lib/policy/mod.ts";
import type { MapResponse } from "../lib/tailcfg/types.ts";
import { clientFilter, nodeRecord } from "./helpers/map_fixtures.ts";

const { config } = parseConfigText("", { env: {} });

Deno.test("policy engine view: peers, filters, SSH and node attributes reach the maps", () => {
  const nodes = new Map([1, 2, 3].map((id) => [id, nodeRecord(id, { tags: [`tag:t${id}`] })]));
  const policyNodes: PolicyNode[] = [...nodes.values()].map((n) => ({
    id: n.id,
    name: n.hostname,
    ipv4: n.ipv4!,
    ipv6: n.ipv6!,
    tags: n.tags,
    advertisedRoutes: [],
    approvedRoutes: [],
  }));
  const policy = parsePolicy(`{
    "tagOwners": { "tag:t1": [], "tag:t2": [], "tag:t3": [] },
    "acls": [{ "action": "accept", "src": ["tag:t1"], "dst": ["tag:t2:22"] }],
    "ssh": [{ "action": "accept", "src": ["tag:t1"], "dst": ["tag:t2"], "users": ["root"] }],
    "nodeAttrs": [{ "target": ["tag:t2"], "attr": ["magicdns-aaaa"] }],
  }`);
  const engine = new PolicyEngine(policy, [], policyNodes);
  const state = {
    getNode: (id: number) => nodes.get(id),
    getUser: () => undefined,
    listNodes: () => [...nodes.values()],
    isOnline: () => true,
    primaryRoutesOf: () => [],
    capVersionOf: () => undefined,
  };
  const mapper = new Mapper({
    state,
    config,
    derpMap: () => TEST_DERP_MAP,
    policy: policyEngineView(engine),
  });
  const map = (id: number): MapResponse => JSON.parse(mapper.fullMapMessages(id)![0].json);

  const m1 = map(1);
  assert.deepEqual(m1.Peers!.map((p) => p.ID), [2]);
  assert.deepEqual(m1.PacketFilters, { "*": null }, "nothing may reach t1");
  // Every node may run Tailscale SSH (as with headscale); t1 simply has no SSH policy.
  assert.ok("https://tailscale.com/cap/ssh" in m1.Node!.CapMap!);
  assert.deepEqual(m1.SSHPolicy?.rules ?? [], [], "no rule lets anyone in");

  const m2 = map(2);
  assert.deepEqual(m2.Peers!.map((p) => p.ID), [1]);
  assert.deepEqual(clientFilter([m2])[0].SrcIPs.sort(), ["100.64.0.1", "fd7a:115c:a1e0::1"]);
  assert.ok(m2.SSHPolicy && m2.SSHPolicy.rules.length > 0);
  assert.ok("https://tailscale.com/cap/ssh" in m2.Node!.CapMap!);
  assert.ok("magicdns-aaaa" in m2.Node!.CapMap!);

  const m3 = map(3);
  assert.deepEqual(m3.Peers, [], "t3 sees nobody");

  // A node the engine has not heard of yet sees nobody instead of throwing.
  nodes.set(4, nodeRecord(4, { tags: ["tag:t3"] }));
  mapper.membershipChanged(4);
  assert.deepEqual(map(4).Peers, []);
  assert.deepEqual(clientFilter([map(4)]), []);
});
