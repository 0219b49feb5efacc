/**
 * The oldest supported client (v1.80.3, capability version 113) through the same core checks
 * as the latest: registration, mesh, pings, a server restart; and the two versions together.
 */
import assert from "node:assert/strict";
import { integrationSkipReason, withHarness } from "./harness.ts";
import { startControlServer } from "./support/control_server.ts";
import { assertMeshScenario, assertRestartScenario } from "./support/scenarios.ts";

const skipReason = await integrationSkipReason();
if (skipReason) console.log(`control version tests skipped: ${skipReason}`);
const ignore = skipReason !== undefined;

Deno.test({
  name: "control: four oldest clients (v1.80.3) mesh, ping, and survive a server restart",
  ignore,
  fn: () =>
    withHarness({ name: "control-oldest", tailscaleVersion: "oldest" }, async (h) => {
      // https, as a real deployment (the latest clients' restart test covers http://). v1.80 then
      // dials HTTPS only after a recent dial, and waits out a 10 s deadline when one is refused.
      const server = await startControlServer(h, { tls: true });
      await server.createUser("alice");
      const key = await server.createAuthKey("alice", { reusable: true });
      const clients = await h.addClients(["old-a", "old-b", "old-c", "old-d"], {
        env: server.clientEnv,
      });
      await assertMeshScenario(server, clients, key);
      await assertRestartScenario(h, server, clients, key, { name: "old-late" });
    }),
});

Deno.test({
  name: "control: an oldest (v1.80.3) and a latest client see and ping each other",
  ignore,
  fn: () =>
    withHarness({ name: "control-mixed" }, async (h) => {
      const server = await startControlServer(h);
      await server.createUser("alice");
      const key = await server.createAuthKey("alice", { reusable: true });
      const [old, latest] = await Promise.all([
        h.addClient("mix-old", { version: "oldest" }),
        h.addClient("mix-new", { version: "latest" }),
      ]);
      const [oldStatus, latestStatus] = await Promise.all([old.status(), latest.status()]);
      assert.match(oldStatus.Version, /^1\.80\.3[-+]?/);
      assert.match(latestStatus.Version, /^1\.102\./);
      await assertMeshScenario(server, [old, latest], key);
    }),
});
