/**
 * The core of the control protocol with real clients: pre-auth key registration, every node in
 * every other node's netmap with the API's addresses and names, and disco pings between all pairs.
 */
import { integrationSkipReason, withHarness } from "./harness.ts";
import { startControlServer } from "./support/control_server.ts";
import { assertAllPairsPing, assertMesh, upAll } from "./support/tailnet.ts";

const skipReason = await integrationSkipReason();
if (skipReason) console.log(`control mesh tests skipped: ${skipReason}`);
const ignore = skipReason !== undefined;

Deno.test({
  name: "control: four clients with pre-auth keys see each other and ping every pair",
  ignore,
  fn: () =>
    withHarness({ name: "control-mesh" }, async (h) => {
      const server = await startControlServer(h);
      await server.createUser("alice");
      const key = await server.createAuthKey("alice", { reusable: true });
      const clients = await h.addClients(["mesh-a", "mesh-b", "mesh-c", "mesh-d"]);
      await upAll(server, clients, key);
      await assertMesh(server, clients);
      await assertAllPairsPing(clients);
    }),
});
