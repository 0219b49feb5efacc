/**
 * `tailscale up --advertise-tags` with real clients (Hostinfo.RequestTags), as headscale v0.29.2
 * treats it: an interactive login registered for a user the policy's tagOwners give the tags to
 * becomes a tagged node owned by no user; a tag the user does not own makes `auth register` fail
 * with a message naming it; a pre-auth key refuses requested tags and `tailscale up` says so.
 */
import assert from "node:assert/strict";
import { integrationSkipReason, withHarness } from "./harness.ts";
import { CommandError } from "./harness/command.ts";
import { startControlServer } from "./support/control_server.ts";

const skipReason = await integrationSkipReason();
if (skipReason) console.log(`control tags tests skipped: ${skipReason}`);
const ignore = skipReason !== undefined;

const AUTH_ID = /\/register\/([A-Za-z0-9_-]+)$/;

// A file policy read at start, before the users exist (the engine learns them later).
const POLICY = `{
  "tagOwners": { "tag:server": ["alice@"], "tag:db": ["bob@"] },
  "acls": [{ "action": "accept", "src": ["*"], "dst": ["*:*"] }],
}`;

Deno.test({
  name:
    "control: --advertise-tags with an interactive login follows tagOwners; a pre-auth key refuses it",
  ignore,
  fn: () =>
    withHarness({ name: "control-tags" }, async (h) => {
      const policyPath = `${h.workDir}/policy.hujson`;
      await Deno.writeTextFile(policyPath, POLICY);
      const server = await startControlServer(h, {
        extraConfig: `policy:\n  mode: file\n  path: ${policyPath}`,
      });
      await Promise.all([server.createUser("alice"), server.createUser("bob")]);
      const [owned, unowned, keyed] = await h.addClients([
        "tags-owned",
        "tags-unowned",
        "tags-key",
      ]);

      // An owned tag: the node is tagged, belongs to no user, and never expires.
      const login = owned.startLogin({
        loginServer: server.url,
        extraArgs: ["--advertise-tags=tag:server"],
      });
      const ownedId = AUTH_ID.exec(await login.authUrl())?.[1];
      assert.ok(ownedId);
      const node = await server.authRegister(ownedId, "alice");
      assert.deepEqual(node.tags, ["tag:server"]);
      assert.equal(node.user, undefined, `a tagged node has no user: ${JSON.stringify(node.user)}`);
      const done = await login.done;
      assert.ok(
        done.success,
        `tailscale up failed after auth register:\n${done.stderr}${done.stdout}`,
      );
      const status = await owned.waitForBackendState("Running");
      assert.deepEqual(status.Self?.Tags, ["tag:server"]);
      const listed = await server.nodeByHostname(owned.name);
      assert.deepEqual(listed.tags, ["tag:server"]);
      assert.equal(listed.user, undefined);
      assert.equal(listed.expiry, undefined, `tagged nodes never expire: ${listed.expiry}`);

      // A tag alice does not own: auth register fails naming it; nothing is registered, and the
      // client waits until the admin decides otherwise (here: reject).
      const refusedLogin = unowned.startLogin({
        loginServer: server.url,
        extraArgs: ["--advertise-tags=tag:db,tag:server"],
      });
      const refusedId = AUTH_ID.exec(await refusedLogin.authUrl())?.[1];
      assert.ok(refusedId);
      const refused = await server.cliRaw(
        ["auth", "register", "--auth-id", refusedId, "--user", "alice"],
      );
      assert.equal(refused.success, false, `auth register succeeded:\n${refused.stdout}`);
      assert.match(
        refused.stderr + refused.stdout,
        /requested tags \[tag:db\] are invalid or not permitted/,
      );
      assert.deepEqual((await server.listNodes()).map((n) => n.name), [owned.name]);
      await server.authReject(refusedId);
      const rejected = await refusedLogin.done;
      assert.equal(rejected.success, false, "tailscale up succeeded after the rejection");

      // A pre-auth key plus --advertise-tags: `tailscale up` fails with the server's message.
      const key = await server.createAuthKey("alice");
      const up = await keyed.up({
        loginServer: server.url,
        authKey: key,
        extraArgs: ["--advertise-tags=tag:server"],
        timeoutMs: 30_000,
      }).then(() => undefined, (e: unknown) => e);
      assert.ok(up instanceof CommandError, `tailscale up with a key and tags: ${up}`);
      assert.match(up.message, /requested tags \[tag:server\] are invalid or not permitted/);
      assert.deepEqual((await server.listNodes()).map((n) => n.name), [owned.name]);
    }),
});
