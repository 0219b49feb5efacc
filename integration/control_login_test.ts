/**
 * Logging in and out with real clients: interactive logins approved or rejected by the admin CLI,
 * logout then login as the same user (same node, same addresses) and as another user.
 */
import assert from "node:assert/strict";
import { integrationSkipReason, withHarness } from "./harness.ts";
import { startControlServer } from "./support/control_server.ts";
import {
  assertMesh,
  assertPings,
  loginNameOf,
  peerByHostName,
  upAll,
  waitForStatus,
  whois,
} from "./support/tailnet.ts";

const skipReason = await integrationSkipReason();
if (skipReason) console.log(`control login tests skipped: ${skipReason}`);
const ignore = skipReason !== undefined;

const AUTH_URL = /^(http:\/\/[^/]+)\/register\/([A-Za-z0-9_-]+)$/;

Deno.test({
  name: "control: interactive login shows the register command; approve joins, reject fails",
  ignore,
  fn: () =>
    withHarness({ name: "control-interactive" }, async (h) => {
      const server = await startControlServer(h);
      await server.createUser("alice");
      const [approved, rejected] = await h.addClients(["login-ok", "login-no"]);
      const approvedLogin = approved.startLogin({ loginServer: server.url });
      const rejectedLogin = rejected.startLogin({ loginServer: server.url });

      // The AuthURL is <server_url>/register/<id>, and its page names the command to run.
      const authUrl = await approvedLogin.authUrl();
      const match = AUTH_URL.exec(authUrl);
      assert.ok(match, `AuthURL ${authUrl} is not <server_url>/register/<id>`);
      assert.equal(match[1], server.url);
      const authId = match[2];
      const page = await fetch(authUrl);
      assert.equal(page.status, 200);
      const html = await page.text();
      assert.ok(
        html.includes(`headscale-deno auth register --auth-id ${authId} --user `),
        `the register page does not show the command:\n${html}`,
      );

      // Approving completes the waiting `tailscale up`.
      const node = await server.authRegister(authId, "alice");
      assert.equal(node.user?.name, "alice");
      const done = await approvedLogin.done;
      assert.ok(done.success, `tailscale up failed after approval:\n${done.stderr}${done.stdout}`);
      const status = await approved.waitForBackendState("Running");
      assert.equal(loginNameOf(status, status.Self), "alice");
      assert.deepEqual([...(status.TailscaleIPs ?? [])].sort(), [...node.ipAddresses].sort());

      // Rejecting makes the other client's login fail and registers nothing.
      const rejectedUrl = await rejectedLogin.authUrl();
      const rejectedId = AUTH_URL.exec(rejectedUrl)?.[2];
      assert.ok(rejectedId, `AuthURL ${rejectedUrl}`);
      assert.notEqual(rejectedId, authId, "each login gets its own id");
      await server.authReject(rejectedId);
      const failed = await rejectedLogin.done;
      assert.equal(failed.success, false, `tailscale up succeeded after a rejection`);
      assert.match(failed.stderr + failed.stdout, /backend error/);
      const nodes = await server.listNodes();
      assert.deepEqual(nodes.map((n) => n.name), ["login-ok"]);
      assert.notEqual((await rejected.status()).BackendState, "Running");
    }),
});

Deno.test({
  name: "control: logout, then login as the same user keeps the node; as another user moves it",
  ignore,
  fn: () =>
    withHarness({ name: "control-relogin" }, async (h) => {
      const server = await startControlServer(h);
      await Promise.all([server.createUser("alice"), server.createUser("bob")]);
      const aliceKey = await server.createAuthKey("alice", { reusable: true });
      const bobKey = await server.createAuthKey("bob");
      const [mover, watcher] = await h.addClients(["relog-a", "relog-b"]);
      await upAll(server, [mover, watcher], aliceKey);
      const before = (await assertMesh(server, [mover, watcher])).find((n) =>
        n.name === mover.name
      );
      assert.ok(before);

      // Logout: the client needs a login again and the server marks the node expired.
      await mover.logout();
      await mover.waitForBackendState("NeedsLogin");
      const loggedOut = await server.nodeByHostname(mover.name);
      assert.ok(
        loggedOut.expiry !== undefined && Date.parse(loggedOut.expiry) <= Date.now(),
        `after logout the node's expiry should be past, is ${loggedOut.expiry}`,
      );

      // Same user again: same node id, same addresses, reachable again.
      await mover.up({ loginServer: server.url, authKey: aliceKey });
      const again = await server.nodeByHostname(mover.name);
      assert.equal(again.id, before.id, "same node id after logging in again");
      assert.deepEqual(again.ipAddresses, before.ipAddresses, "same addresses");
      assert.equal(again.user?.name, "alice");
      assert.ok(
        again.expiry === undefined || Date.parse(again.expiry) > Date.now(),
        `the new login is not expired (${again.expiry})`,
      );
      await assertMesh(server, [mover, watcher]);
      await assertPings(watcher, mover);

      // Another user: the machine now belongs to bob, for itself and for its peers.
      await mover.logout();
      await mover.waitForBackendState("NeedsLogin");
      await mover.up({ loginServer: server.url, authKey: bobKey });
      const moved = await server.nodeByHostname(mover.name);
      assert.equal(moved.user?.name, "bob");
      const self = await mover.waitForBackendState("Running");
      assert.equal(loginNameOf(self, self.Self), "bob");
      await waitForStatus(watcher, (status) => {
        const peer = peerByHostName(status, mover.name);
        return peer !== undefined && peer.Online && peer.UserID === Number(moved.user?.id);
      }, `${mover.name} online as bob's node`);
      const seen = await whois(watcher, before.ipAddresses.find((a) => !a.includes(":"))!);
      assert.equal(seen.Node.ID, Number(moved.id));
      assert.equal(seen.UserProfile.LoginName, "bob", `${watcher.name}'s whois of ${mover.name}`);
      await assertPings(watcher, mover);
      await assertPings(mover, watcher);
    }),
});
