import assert from "node:assert/strict";
import { nodeToProto } from "../lib/api/convert.ts";
import { openMemoryState, registerTestNode } from "./helpers/memory_state.ts";

Deno.test("api: subnetRoutes are what a node serves now, as headscale lists them: primary subnet routes and approved exit routes", async () => {
  const { store, state } = await openMemoryState();
  try {
    const user = await state.createUser({ name: "ops" });
    const routers = [];
    for (const n of [1, 2]) {
      const node = await registerTestNode(state, user.id, `r${n}`);
      state.applyReport(node.id, {
        hostinfo: { Hostname: `r${n}`, RoutableIPs: ["10.1.0.0/24", "0.0.0.0/0", "::/0"] },
      });
      await state.setApprovedRoutes(node.id, ["10.1.0.0/24", "0.0.0.0/0", "::/0"]);
      routers.push(node.id);
    }
    const [r1, r2] = routers;
    const api = (id: number) => {
      const n = nodeToProto(state.getNode(id)!, state);
      return { available: n.availableRoutes, approved: n.approvedRoutes, serving: n.subnetRoutes };
    };
    // Offline: nothing is primary; exit routes are served (they have no primary).
    assert.deepEqual(api(r1).serving, ["0.0.0.0/0", "::/0"]);
    state.streamOpened(r1);
    state.streamOpened(r2);
    assert.deepEqual(api(r1), {
      available: ["10.1.0.0/24", "0.0.0.0/0", "::/0"],
      approved: ["0.0.0.0/0", "10.1.0.0/24", "::/0"],
      serving: ["10.1.0.0/24", "0.0.0.0/0", "::/0"],
    });
    assert.deepEqual(api(r2).serving, ["0.0.0.0/0", "::/0"], "the standby serves no subnet route");
    state.streamClosed(r1);
    assert.deepEqual(api(r2).serving, ["10.1.0.0/24", "0.0.0.0/0", "::/0"], "r2 took over");
    assert.deepEqual(api(r1).serving, ["0.0.0.0/0", "::/0"]);
  } finally {
    await state.close();
    await store.close();
  }
});
