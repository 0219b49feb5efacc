/**
 * OIDC logins with real clients: an OpenID provider started by the test (tests/helpers: real
 * discovery, code flow, RS256-signed ID tokens, JWKS, userinfo), our server configured with
 * headscale's `oidc.*` keys, and tailscaled. The test plays the browser: it opens the AuthURL
 * `tailscale up` printed, carries the server's cookie, fills in the provider's login form, and
 * follows the redirect back to `/oidc/callback`.
 */
import assert from "node:assert/strict";
import { integrationSkipReason, withHarness } from "./harness.ts";
import { type ControlServer, startControlServer } from "./support/control_server.ts";
import { loginNameOf, waitForStatus } from "./support/tailnet.ts";
import { browserLogin, oidcYaml, withOidcProvider } from "./support/oidc.ts";

const skipReason = await integrationSkipReason();
if (skipReason) console.log(`oidc tests skipped: ${skipReason}`);
const ignore = skipReason !== undefined;

/** How long the provider's ID tokens last in the expiry test. */
const TOKEN_TTL_S = 20;

async function usersOf(server: ControlServer) {
  return await server.cli<{ name: string; displayName?: string; email?: string }[]>([
    "users",
    "list",
  ]);
}

for (const pkce of [false, true]) {
  Deno.test({
    name: `oidc: tailscale up completes after the provider login (pkce ${pkce}); re-login keeps ` +
      "the node; refused users see why",
    ignore,
    fn: () =>
      withOidcProvider((idp) =>
        withHarness({ name: `oidc-login-${pkce ? "pkce" : "plain"}` }, async (h) => {
          const server = await startControlServer(h, {
            extraConfig: oidcYaml(
              idp,
              `  allowed_domains: [example.com]\n  allowed_groups: [staff]\n` +
                // With PKCE, an allowed_users list too (bob is in the domain and the group).
                (pkce ? `  allowed_users: [alice@example.com]\n` : "") +
                `  pkce:\n    enabled: ${pkce}\n`,
            ),
          });
          const [laptop, other] = await h.addClients(["oidc-laptop", "oidc-other"]);
          const login = laptop.startLogin({ loginServer: server.url });
          const authUrl = await login.authUrl();
          assert.match(authUrl, new RegExp(`^${server.url}/register/\\w+$`));
          const page = await browserLogin(idp, authUrl, "alice");
          assert.equal(page.status, 200, page.html);
          assert.match(page.html, /Machine registered/);
          const done = await login.done;
          assert.ok(done.success, `tailscale up failed:\n${done.stderr}${done.stdout}`);
          const status = await laptop.waitForBackendState("Running");
          assert.equal(loginNameOf(status, status.Self), "alice@example.com");
          const node = await server.nodeByHostname(laptop.name);
          assert.equal(node.user?.name, "alice");
          assert.equal(node.registerMethod, "REGISTER_METHOD_OIDC");
          const challenge = idp.authorizationRequests.at(-1)!.get("code_challenge_method");
          assert.equal(challenge, pkce ? "S256" : null);
          assert.equal(idp.tokenRequests.at(-1)!.codeVerifier !== null, pkce);
          const [alice] = await usersOf(server);
          assert.equal(alice.displayName, "Alice Example");
          assert.equal(alice.email, "alice@example.com");

          // Re-login of the same machine: the same node, the same addresses.
          const again = laptop.startLogin({
            loginServer: server.url,
            extraArgs: ["--force-reauth"],
          });
          const againUrl = await waitForNewAuthUrl(again, authUrl);
          assert.equal((await browserLogin(idp, againUrl, "alice")).status, 200);
          const redone = await again.done;
          assert.ok(redone.success, `re-login failed:\n${redone.stderr}${redone.stdout}`);
          const relogged = await server.nodeByHostname(laptop.name);
          assert.equal(relogged.id, node.id);
          assert.deepEqual(relogged.ipAddresses, node.ipAddresses);

          // Refused: another domain, an unverified e-mail, a group outside the list, a user
          // outside the list.
          const refused = other.startLogin({ loginServer: server.url, timeoutMs: 60_000 });
          const refusedUrl = await refused.authUrl();
          for (
            const [user, reason] of [
              ["eve", /domain of your e-mail address is not allowed/],
              ["unverified", /e-mail address is not verified/],
              ["outsider", /not in any of the groups allowed/],
              ...(pkce ? [["bob", /not among the users allowed/] as const] : []),
            ] as const
          ) {
            const r = await browserLogin(idp, refusedUrl, user);
            assert.equal(r.status, 403, `${user}: ${r.html}`);
            assert.match(r.html, reason);
          }
          const nodes = await server.listNodes();
          assert.deepEqual(nodes.map((n) => n.name), [laptop.name]);
          assert.deepEqual((await usersOf(server)).map((u) => u.name), ["alice"]);
          assert.notEqual((await other.status()).BackendState, "Running");
        })
      ),
  });
}

/** The AuthURL of a new login (tailscale status may still show the previous one for a moment). */
async function waitForNewAuthUrl(
  login: { authUrl(ms?: number): Promise<string> },
  previous: string,
): Promise<string> {
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    const url = await login.authUrl();
    if (url !== previous) return url;
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error("no new AuthURL after --force-reauth");
}

Deno.test({
  name: "oidc: use_expiry_from_token — the node's key expires when the ID token does",
  ignore,
  fn: () =>
    withOidcProvider(
      (idp) =>
        withHarness({ name: "oidc-token-expiry" }, async (h) => {
          const server = await startControlServer(h, {
            extraConfig: oidcYaml(idp, "  use_expiry_from_token: true\n"),
          });
          const [laptop] = await h.addClients(["oidc-expiring"]);
          const login = laptop.startLogin({ loginServer: server.url });
          const loggedInAt = Date.now();
          const page = await browserLogin(idp, await login.authUrl(), "alice");
          assert.equal(page.status, 200, page.html);
          const done = await login.done;
          assert.ok(done.success, `tailscale up failed:\n${done.stderr}${done.stdout}`);
          const running = await laptop.waitForBackendState("Running");
          const expiry = Date.parse(running.Self?.KeyExpiry ?? "");
          assert.ok(
            expiry > loggedInAt && expiry <= Date.now() + TOKEN_TTL_S * 1000 + 2_000,
            `the key expires with the token: ${running.Self?.KeyExpiry}`,
          );
          // When the token's time is up, the client learns its key expired.
          const expired = await waitForStatus(
            laptop,
            (s) => s.BackendState === "NeedsLogin" || s.Self?.Expired === true,
            "its key expired with the ID token",
            TOKEN_TTL_S * 1000 + 60_000,
          );
          assert.ok(expired.BackendState === "NeedsLogin" || expired.Self?.Expired === true);
        }),
      { idTokenTtl: TOKEN_TTL_S },
    ),
});
