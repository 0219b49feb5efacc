/** A server restart under real clients: they reconnect, keep their addresses, and still ping. */
import { integrationSkipReason, withHarness } from "./harness.ts";
import { startControlServer } from "./support/control_server.ts";
import { assertMeshScenario, assertRestartScenario } from "./support/scenarios.ts";

const skipReason = await integrationSkipReason();
if (skipReason) console.log(`control restart tests skipped: ${skipReason}`);
const ignore = skipReason !== undefined;

Deno.test({
  name: "control: after a server restart clients reconnect with the same nodes and addresses",
  ignore,
  fn: () =>
    withHarness({ name: "control-restart" }, async (h) => {
      const server = await startControlServer(h);
      await server.createUser("alice");
      const key = await server.createAuthKey("alice", { reusable: true });
      const clients = await h.addClients(["rst-a", "rst-b", "rst-c"]);
      await assertMeshScenario(server, clients, key);
      await assertRestartScenario(h, server, clients, key, { name: "rst-late" });
    }),
});
