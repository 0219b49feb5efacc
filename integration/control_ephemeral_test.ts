/**
 * Ephemeral nodes with real clients: one that logs out is deleted at once, one that just goes
 * away is deleted after node.ephemeral.inactivity_timeout (66 s, the smallest the server
 * accepts, so this test takes a little over a minute).
 */
import assert from "node:assert/strict";
import { integrationSkipReason, waitFor, withHarness } from "./harness.ts";
import { startControlServer } from "./support/control_server.ts";
import { assertMesh, upAll, waitForPeerGone } from "./support/tailnet.ts";

const skipReason = await integrationSkipReason();
if (skipReason) console.log(`control ephemeral tests skipped: ${skipReason}`);
const ignore = skipReason !== undefined;

const INACTIVITY_TIMEOUT_MS = 66_000;

Deno.test({
  name: "control: ephemeral nodes are deleted on logout, and after the inactivity timeout",
  ignore,
  fn: () =>
    withHarness({ name: "control-ephemeral" }, async (h) => {
      const server = await startControlServer(h, {
        ephemeralInactivityTimeout: `${INACTIVITY_TIMEOUT_MS / 1000}s`,
      });
      await server.createUser("alice");
      const [ephemeralKey, regularKey] = await Promise.all([
        server.createAuthKey("alice", { reusable: true, ephemeral: true }),
        server.createAuthKey("alice", { reusable: true }),
      ]);
      const [leaver, vanisher, stayer] = await h.addClients(["eph-out", "eph-gone", "eph-stay"]);
      await Promise.all([
        upAll(server, [leaver, vanisher], ephemeralKey),
        upAll(server, [stayer], regularKey),
      ]);
      await assertMesh(server, [leaver, vanisher, stayer]);

      // Logging out deletes an ephemeral node right away.
      await leaver.logout();
      await waitForPeerGone(stayer, leaver.name, 15_000);
      await waitForPeerGone(vanisher, leaver.name, 15_000);
      assert.deepEqual(
        (await server.listNodes()).map((n) => n.name).sort(),
        [vanisher.name, stayer.name].sort(),
      );

      // Going away without a word: offline first, deleted once the timeout has passed.
      await vanisher.stopDaemon();
      const leftAt = Date.now();
      await waitFor(
        async () => (await server.nodeByHostname(vanisher.name)).online === false,
        15_000,
        { description: `${vanisher.name} offline in the API` },
      );
      const stillThere = await server.listNodes();
      assert.ok(
        stillThere.some((n) => n.name === vanisher.name),
        "an offline ephemeral node stays until the inactivity timeout",
      );
      await waitForPeerGone(stayer, vanisher.name, INACTIVITY_TIMEOUT_MS + 30_000);
      const waited = Date.now() - leftAt;
      assert.ok(
        waited >= INACTIVITY_TIMEOUT_MS - 5_000,
        `deleted after ${waited} ms, before the ${INACTIVITY_TIMEOUT_MS} ms timeout`,
      );
      assert.deepEqual((await server.listNodes()).map((n) => n.name), [stayer.name]);
    }),
});
