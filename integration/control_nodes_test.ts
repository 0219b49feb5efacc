/**
 * Admin actions and client-side changes reaching real clients: `nodes expire`, `nodes delete`,
 * a hostname change with `tailscale set`.
 */
import assert from "node:assert/strict";
import { integrationSkipReason, withHarness } from "./harness.ts";
import { startControlServer } from "./support/control_server.ts";
import {
  assertMesh,
  assertPeerMatchesApi,
  peerByHostName,
  upAll,
  waitForPeerGone,
  waitForStatus,
} from "./support/tailnet.ts";

const skipReason = await integrationSkipReason();
if (skipReason) console.log(`control node tests skipped: ${skipReason}`);
const ignore = skipReason !== undefined;

/**
 * Whether a KeyExpiry is past. `tailscale status` rounds it to the second (possibly up), so half
 * a second of slack keeps a just-expired key from looking current.
 */
function inThePast(time: string | undefined): boolean {
  return time !== undefined && !time.startsWith("0001-") && Date.parse(time) <= Date.now() + 500;
}

Deno.test({
  name: "control: nodes expire logs the client out and peers see it expired",
  ignore,
  fn: () =>
    withHarness({ name: "control-expire" }, async (h) => {
      const server = await startControlServer(h);
      await server.createUser("alice");
      const key = await server.createAuthKey("alice", { reusable: true });
      const [expiring, watcher] = await h.addClients(["exp-a", "exp-b"]);
      await upAll(server, [expiring, watcher], key);
      const nodes = await assertMesh(server, [expiring, watcher]);
      const node = nodes.find((n) => n.name === expiring.name)!;

      const expired = await server.expireNode(node.id);
      assert.ok(inThePast(expired.expiry), `the API's expiry is ${expired.expiry}`);

      // The client learns that its own key expired: it needs a login again.
      const self = await waitForStatus(
        expiring,
        (s) => s.BackendState === "NeedsLogin" || s.Self?.Expired === true,
        "its own key expired (NeedsLogin or Self.Expired)",
      );
      assert.ok(
        self.BackendState === "NeedsLogin" || inThePast(self.Self?.KeyExpiry),
        `BackendState ${self.BackendState}, Self.KeyExpiry ${self.Self?.KeyExpiry}`,
      );
      // Its peer sees it expired.
      const seen = await waitForStatus(
        watcher,
        (s) => peerByHostName(s, expiring.name)?.Expired === true,
        `${expiring.name} marked Expired`,
      );
      const peer = peerByHostName(seen, expiring.name)!;
      assert.ok(inThePast(peer.KeyExpiry), `peer KeyExpiry ${peer.KeyExpiry}`);
      // The watcher itself is unaffected.
      assert.equal((await watcher.status()).BackendState, "Running");
    }),
});

Deno.test({
  name: "control: nodes delete drops the node from every peer's status",
  ignore,
  fn: () =>
    withHarness({ name: "control-delete" }, async (h) => {
      const server = await startControlServer(h);
      await server.createUser("alice");
      const key = await server.createAuthKey("alice", { reusable: true });
      const clients = await h.addClients(["del-a", "del-b", "del-c"]);
      await upAll(server, clients, key);
      const nodes = await assertMesh(server, clients);
      const [keepA, keepB, doomed] = clients;
      const doomedNode = nodes.find((n) => n.name === doomed.name)!;

      await server.deleteNode(doomedNode.id);
      assert.deepEqual(
        (await server.listNodes()).map((n) => n.name).sort(),
        [keepA.name, keepB.name],
      );
      // The deleted machine itself is told: it needs a login again.
      await doomed.waitForBackendState("NeedsLogin");
      for (const client of [keepA, keepB]) {
        const status = await waitForPeerGone(client, doomed.name);
        // The remaining peer is still there, unchanged.
        const other = client === keepA ? keepB : keepA;
        assertPeerMatchesApi(
          server,
          status,
          nodes.find((n) => n.name === other.name)!,
          client.name,
        );
      }
    }),
});

Deno.test({
  name: "control: tailscale set --hostname shows up in peers' view and the API",
  ignore,
  fn: () =>
    withHarness({ name: "control-hostname" }, async (h) => {
      const server = await startControlServer(h);
      await server.createUser("alice");
      const key = await server.createAuthKey("alice", { reusable: true });
      const [renamed, watcher] = await h.addClients(["host-a", "host-b"]);
      await upAll(server, [renamed, watcher], key);
      const nodes = await assertMesh(server, [renamed, watcher]);
      const before = nodes.find((n) => n.name === renamed.name)!;

      await renamed.cliChecked(["set", "--hostname=host-new"]);
      const status = await waitForStatus(
        watcher,
        (s) => peerByHostName(s, "host-new") !== undefined,
        "a peer named host-new",
      );
      assert.equal(peerByHostName(status, renamed.name), undefined, "the old name is gone");
      const after = await server.nodeByHostname("host-new");
      assert.equal(after.id, before.id, "same node");
      assert.deepEqual(after.ipAddresses, before.ipAddresses);
      assertPeerMatchesApi(server, status, after, watcher.name);
    }),
});
