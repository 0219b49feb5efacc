/** lib/oidc: allow-lists, and the client against a provider that signs real JWTs. */
import assert from "node:assert/strict";
import type { OidcConfig } from "../lib/config/config.ts";
import { authorize, claimsFrom, providerIdentifier, trustedEmail } from "../lib/oidc/claims.ts";
import { OidcClient, OidcError } from "../lib/oidc/client.ts";
import { type OidcProvider, startOidcProvider } from "./helpers/oidc_provider.ts";

const REDIRECT = "http://hs.example/oidc/callback";

function oidcConfig(issuer: string, over: Partial<OidcConfig> = {}): OidcConfig {
  return {
    issuer,
    clientId: "hs",
    clientSecret: "s3cret",
    clientSecretPath: "",
    scope: ["openid", "profile", "email"],
    extraParams: {},
    allowedDomains: [],
    allowedUsers: [],
    allowedGroups: [],
    emailVerifiedRequired: true,
    pkce: { enabled: false, method: "S256" },
    useExpiryFromToken: false,
    onlyStartIfOidcIsAvailable: true,
    ...over,
  };
}

const alice = claimsFrom({
  iss: "https://id",
  sub: "1",
  email: "alice@example.com",
  email_verified: true,
  groups: ["staff"],
});

Deno.test("oidc allow-lists: headscale's order and reasons", () => {
  const cfg = oidcConfig("https://id");
  assert.equal(authorize(cfg, alice), null);
  assert.equal(authorize({ ...cfg, allowedGroups: ["admins"] }, alice)?.reason, "group");
  assert.equal(authorize({ ...cfg, allowedGroups: ["admins", "staff"] }, alice), null);
  assert.equal(authorize({ ...cfg, allowedDomains: ["example.org"] }, alice)?.reason, "domain");
  assert.equal(authorize({ ...cfg, allowedDomains: ["EXAMPLE.com"] }, alice), null);
  assert.equal(authorize({ ...cfg, allowedUsers: ["bob@example.com"] }, alice)?.reason, "user");
  assert.equal(authorize({ ...cfg, allowedUsers: ["alice@example.com"] }, alice), null);
  // An unverified address counts for nothing while verification is required.
  const unverified = { ...alice, emailVerified: false };
  assert.equal(
    authorize({ ...cfg, allowedDomains: ["example.com"] }, unverified)?.reason,
    "unverified-email",
  );
  assert.equal(
    authorize({ ...cfg, allowedUsers: ["alice@example.com"] }, unverified)?.reason,
    "unverified-email",
  );
  assert.equal(
    authorize(
      { ...cfg, allowedDomains: ["example.com"], emailVerifiedRequired: false },
      unverified,
    ),
    null,
  );
  // Without e-mail lists an unverified address is no reason to refuse (headscale).
  assert.equal(authorize(cfg, unverified), null);
  // "@example.com" inside the local part does not make the domain.
  const tricky = claimsFrom({ email: "x@example.com@evil.org", email_verified: true });
  assert.equal(authorize({ ...cfg, allowedDomains: ["example.com"] }, tricky)?.reason, "domain");
});

Deno.test("oidc claims: flexible email_verified and groups; identity is issuer + subject", () => {
  const c = claimsFrom({ iss: "https://id/", sub: "a", email_verified: "true", groups: "g" });
  assert.equal(c.emailVerified, true);
  assert.deepEqual(c.groups, ["g"]);
  assert.equal(providerIdentifier("https://id/", "a"), "https://id/a");
  assert.notEqual(providerIdentifier("https://id", "a"), providerIdentifier("https://other", "a"));
  assert.equal(trustedEmail({ ...alice, emailVerified: false }, true), "");
  assert.equal(trustedEmail({ ...alice, emailVerified: false }, false), "alice@example.com");
});

async function withProvider(fn: (idp: OidcProvider) => Promise<void>) {
  const idp = await startOidcProvider({ clientId: "hs", clientSecret: "s3cret" });
  idp.users.set("alice", {
    sub: "sub-alice",
    email: "alice@example.com",
    email_verified: true,
    name: "Alice A.",
    preferred_username: "alice",
    picture: "https://pics.example/alice.png",
  });
  try {
    await fn(idp);
  } finally {
    await idp.close();
  }
}

async function loginThrough(client: OidcClient, idp: OidcProvider, user = "alice") {
  const tx = client.newTransaction();
  const url = await client.authorizationUrl(tx);
  const back = await idp.login(url.toString(), user);
  return { tx, params: back.searchParams };
}

Deno.test("oidc client: code flow with a signed ID token, userinfo merged", async () => {
  await withProvider(async (idp) => {
    idp.users.set("alice", { ...idp.users.get("alice")!, name: undefined });
    // userinfo adds what the ID token lacks.
    const client = new OidcClient({
      config: oidcConfig(idp.issuer, { extraParams: { prompt: "login", state: "evil" } }),
      clientSecret: "s3cret",
      redirectUri: REDIRECT,
    });
    await client.discover();
    const { tx, params } = await loginThrough(client, idp);
    const q = idp.authorizationRequests[0];
    assert.equal(q.get("prompt"), "login");
    assert.equal(q.get("state"), tx.state, "extra_params cannot replace the state");
    assert.equal(q.get("nonce"), tx.nonce);
    assert.equal(q.get("code_challenge"), null, "no PKCE unless enabled");
    const { claims, tokenExpiry } = await client.complete(params, tx);
    assert.equal(claims.sub, "sub-alice");
    assert.equal(claims.iss, idp.issuer);
    assert.equal(claims.picture, "https://pics.example/alice.png");
    assert.ok(tokenExpiry.getTime() > Date.now() + 3000_000);
    // The code is single use: the same callback again is refused.
    await assert.rejects(
      client.complete(params, tx),
      (e) => e instanceof OidcError && e.status === 403,
    );
  });
});

Deno.test("oidc client: PKCE S256 and plain reach the token endpoint; a wrong verifier fails", async () => {
  await withProvider(async (idp) => {
    for (const method of ["S256", "plain"] as const) {
      const client = new OidcClient({
        config: oidcConfig(idp.issuer, { pkce: { enabled: true, method } }),
        clientSecret: "s3cret",
        redirectUri: REDIRECT,
      });
      const { tx, params } = await loginThrough(client, idp);
      const q = idp.authorizationRequests.at(-1)!;
      assert.equal(q.get("code_challenge_method"), method);
      assert.ok(tx.codeVerifier);
      await client.complete(params, tx);
      assert.equal(idp.tokenRequests.at(-1)!.codeVerifier, tx.codeVerifier);
      const again = await loginThrough(client, idp);
      await assert.rejects(
        client.complete(again.params, { ...again.tx, codeVerifier: "x".repeat(43) }),
        (e) => e instanceof OidcError && /token exchange: .*invalid_grant/.test(e.detail),
      );
    }
  });
});

Deno.test("oidc client: forged, misaddressed, expired or replayed ID tokens are refused", async () => {
  await withProvider(async (idp) => {
    const client = new OidcClient({
      config: oidcConfig(idp.issuer),
      clientSecret: "s3cret",
      redirectUri: REDIRECT,
    });
    const cases: [Parameters<typeof Object.assign>[1], RegExp][] = [
      [{ foreignKey: true }, /ID token signature/],
      [{ iss: "http://evil.example" }, /token exchange: .*iss/i],
      [{ aud: "someone-else" }, /token exchange: .*aud/i],
      [{ nonce: "not-the-nonce" }, /token exchange: .*nonce/i],
      [{ expiredBy: 3600 }, /token exchange: .*exp/i],
    ];
    for (const [tamper, detail] of cases) {
      idp.tamper = tamper;
      const { tx, params } = await loginThrough(client, idp);
      await assert.rejects(
        client.complete(params, tx),
        (e) => e instanceof OidcError && e.status === 403 && detail.test(e.detail),
        JSON.stringify(tamper),
      );
    }
    idp.tamper = {};
    // A state that is not the transaction's: a forged callback.
    const { tx, params } = await loginThrough(client, idp);
    await assert.rejects(
      client.complete(params, { ...tx, state: "another" }),
      (e) => e instanceof OidcError && e.status === 400,
    );
    // The provider's error answer.
    await assert.rejects(
      client.complete(new URLSearchParams({ error: "access_denied", state: tx.state }), tx),
      (e) => e instanceof OidcError && /access_denied/.test(e.message),
    );
  });
});

Deno.test("oidc client: key rotation; a provider that is down fails clearly", async () => {
  await withProvider(async (idp) => {
    let now = 0;
    const client = new OidcClient({
      config: oidcConfig(idp.issuer),
      clientSecret: "s3cret",
      redirectUri: REDIRECT,
      retryMs: 1000,
      now: () => now,
    });
    idp.down = true;
    await assert.rejects(client.discover(), (e) => e instanceof OidcError && e.status === 503);
    assert.equal(client.available, false);
    idp.down = false;
    // Within retryMs no new attempt is made.
    await assert.rejects(client.ready(), (e) => e instanceof OidcError && e.status === 503);
    now = 2000;
    await client.ready();
    assert.equal(client.available, true);
    const first = await loginThrough(client, idp);
    await client.complete(first.params, first.tx);
    await idp.rotateKeys();
    // A key id the cached JWKS lacks: the library fetches the JWKS again once the copy is a
    // minute old (and always after five); a fresh copy that lacks the key refuses the token.
    const second = await loginThrough(client, idp);
    await assert.rejects(
      client.complete(second.params, second.tx),
      (e) => e instanceof OidcError && /ID token signature: .*key/.test(e.detail),
    );
    // A client that discovers anew (a restart) fetches the JWKS and accepts the new key.
    const fresh = new OidcClient({
      config: oidcConfig(idp.issuer),
      clientSecret: "s3cret",
      redirectUri: REDIRECT,
    });
    const third = await loginThrough(fresh, idp);
    await fresh.complete(third.params, third.tx);
  });
});
