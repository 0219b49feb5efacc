/**
 * OIDC in integration tests: the test provider (tests/helpers/oidc_provider.ts: real discovery,
 * code flow, RS256 ID tokens, JWKS) with a few users, the `oidc:` config section for it, and the
 * browser's part of a login or an SSH check approval.
 */
import assert from "node:assert/strict";
import { type OidcProvider, startOidcProvider } from "../../tests/helpers/oidc_provider.ts";

export const OIDC_CLIENT_SECRET = "integration-client-secret";

/** The `oidc:` section for `idp`; `extra` is appended (indented keys of the section). */
export function oidcYaml(idp: OidcProvider, extra = ""): string {
  return `oidc:\n  issuer: ${idp.issuer}\n  client_id: headscale\n` +
    `  client_secret: ${OIDC_CLIENT_SECRET}\n${extra}`;
}

/**
 * Runs `fn` with a provider that knows alice, bob, eve, an unverified user and an outsider;
 * `idTokenTtl` (seconds) sets how long its ID tokens last.
 */
export async function withOidcProvider<T>(
  fn: (idp: OidcProvider) => Promise<T>,
  opts: { idTokenTtl?: number } = {},
): Promise<T> {
  const idp = await startOidcProvider({
    clientId: "headscale",
    clientSecret: OIDC_CLIENT_SECRET,
    idTokenTtl: opts.idTokenTtl,
  });
  idp.users.set("alice", {
    sub: "alice-sub",
    email: "alice@example.com",
    email_verified: true,
    name: "Alice Example",
    preferred_username: "alice",
    picture: "https://pics.example/alice.png",
    groups: ["staff"],
  });
  idp.users.set("eve", {
    sub: "eve-sub",
    email: "eve@elsewhere.org",
    email_verified: true,
    name: "Eve",
    preferred_username: "eve",
    groups: ["staff"],
  });
  idp.users.set("bob", {
    sub: "bob-sub",
    email: "bob@example.com",
    email_verified: true,
    name: "Bob",
    preferred_username: "bob",
    groups: ["staff"],
  });
  idp.users.set("unverified", {
    sub: "u-sub",
    email: "ursula@example.com",
    email_verified: false,
    groups: ["staff"],
  });
  idp.users.set("outsider", {
    sub: "o-sub",
    email: "olga@example.com",
    email_verified: true,
    groups: ["guests"],
  });
  try {
    return await fn(idp);
  } finally {
    await idp.close();
  }
}

/** The browser from a link of ours that sends it to the provider, back to /oidc/callback. */
async function throughProvider(idp: OidcProvider, link: string, username: string) {
  const start = await fetch(link, { redirect: "manual" });
  await start.body?.cancel();
  assert.equal(start.status, 302, `${link} should redirect to the provider`);
  const cookie = (start.headers.get("set-cookie") ?? "").split(";")[0];
  const back = await idp.login(start.headers.get("location")!, username);
  const page = await fetch(back, { headers: { cookie } });
  return { back, page, html: await page.text() };
}

/**
 * A login: AuthURL → provider login form as `username` → callback → the confirmation page's
 * button (POST /oidc/confirm with its one-time token and cookie); the final page.
 */
export async function browserLogin(idp: OidcProvider, authUrl: string, username: string) {
  const { back, page, html } = await throughProvider(idp, authUrl, username);
  const token = /name="token" value="([0-9a-f]+)"/.exec(html)?.[1];
  if (page.status !== 200 || !token) return { status: page.status, html };
  const confirmCookie = page.headers.getSetCookie().map((c) => c.split(";")[0])
    .find((c) => c.startsWith("headscale_oidc_confirm=") && !c.endsWith("="));
  const done = await fetch(new URL("/oidc/confirm", back), {
    method: "POST",
    headers: {
      "content-type": "application/x-www-form-urlencoded",
      ...(confirmCookie ? { cookie: confirmCookie } : {}),
    },
    body: new URLSearchParams({ token }).toString(),
  });
  return { status: done.status, html: await done.text() };
}

/** An SSH check approved by signing in: `<server>/auth/<id>/oidc` → provider → callback. */
export async function browserSshCheck(
  idp: OidcProvider,
  serverUrl: string,
  authId: string,
  username: string,
) {
  const { page, html } = await throughProvider(idp, `${serverUrl}/auth/${authId}/oidc`, username);
  return { status: page.status, html };
}
