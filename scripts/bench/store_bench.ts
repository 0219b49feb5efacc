/**
 * SQLite store timings: registering a node (saveNode, one transaction with an fsync), replacing
 * one, and the map-session batch (updateNodes of 1,000 nodes in one transaction).
 *
 *   deno bench --allow-read --allow-write --allow-env --allow-sys scripts/bench/store_bench.ts
 */
import { openStore } from "../../lib/store/mod.ts";
import type { NewNode, NodeRecord, Store } from "../../lib/store/types.ts";

const dir = await Deno.makeTempDir({ prefix: "headscale-store-bench-" });
const store: Store = await openStore({
  type: "sqlite",
  sqlite: { path: `${dir}/db.sqlite`, writeAheadLog: true },
});
globalThis.addEventListener("unload", () => {
  void store.close();
  Deno.removeSync(dir, { recursive: true });
});

const user = await store.insertUser({
  name: "bench",
  displayName: "",
  email: "",
  providerId: "",
  provider: "",
  profilePicUrl: "",
  createdAt: new Date(),
});

function node(i: number): NewNode {
  const hex = (prefix: string) => `${prefix}:${i.toString(16).padStart(64, "0")}`;
  const now = new Date();
  return {
    machineKey: hex("mkey"),
    nodeKey: hex("nodekey"),
    discoKey: hex("discokey"),
    ipv4: `100.${64 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}`,
    ipv6: `fd7a:115c:a1e0::${i.toString(16)}`,
    hostname: `host-${i}`,
    givenName: `host-${i}`,
    userId: user.id,
    tags: [],
    authKeyId: null,
    registerMethod: "authkey",
    ephemeral: false,
    hostinfo: {
      Hostname: `host-${i}`,
      OS: "linux",
      IPNVersion: "1.80.0",
      NetInfo: { PreferredDERP: 1, WorkingUDP: true },
    },
    endpoints: [`198.51.100.${i & 255}:41641`, `[2001:db8::${i.toString(16)}]:41641`],
    approvedRoutes: [],
    expiry: null,
    lastSeen: now,
    createdAt: now,
    updatedAt: now,
  };
}

let next = 1;
const batch: NodeRecord[] = [];
for (let i = 0; i < 1000; i++) batch.push(await store.saveNode(node(next++)));
let replaced = batch[0];

Deno.bench("sqlite saveNode (new node)", { group: "saveNode", baseline: true }, async () => {
  await store.saveNode(node(next++));
});

Deno.bench("sqlite saveNode (replace a node)", { group: "saveNode" }, async () => {
  replaced = await store.saveNode({ ...replaced, updatedAt: new Date() });
});

Deno.bench("sqlite updateNodes (batch of 1,000)", async (b) => {
  const now = new Date();
  const changed = batch.map((n, i) => ({
    ...n,
    endpoints: [`203.0.113.${i & 255}:${40000 + (now.getTime() & 4095)}`],
    lastSeen: now,
    updatedAt: now,
  }));
  b.start();
  await store.updateNodes(changed);
  b.end();
});
