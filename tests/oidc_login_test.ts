/**
 * OIDC logins end to end in one process: a control plane with `oidc.*`, a client that registers
 * without a key and waits (Followup), a browser (fetch with its cookie) through the provider's
 * login form, and `/oidc/callback`. Every refusal: page, log line without secrets, nothing
 * registered.
 */
import assert from "node:assert/strict";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import { parseConfigText } from "../lib/config/load.ts";
import { createLogger } from "../lib/log/log.ts";
import { startOidc } from "../lib/oidc/setup.ts";
import type { RegisterResponse } from "../lib/tailcfg/types.ts";
import type { MachineKey } from "../lib/tailcfg/keys.ts";
import { randomKey, startTestControl, type TestControl } from "./helpers/control.ts";
import { type OidcProvider, startOidcProvider, type UserClaims } from "./helpers/oidc_provider.ts";

const ZERO_NODEKEY = "nodekey:" + "0".repeat(64);
const SECRET = "very-secret-client-secret";

const ALICE: UserClaims = {
  sub: "sub-alice",
  email: "alice@example.com",
  email_verified: true,
  name: "Alice Example",
  preferred_username: "alice",
  picture: "https://pics.example/alice.png",
  groups: ["staff"],
};

interface World {
  t: TestControl;
  idp: OidcProvider;
  web: string;
  logs: string[];
}

async function withWorld(
  oidcYaml: string,
  fn: (w: World) => Promise<void>,
  opts: { extra?: string } = {},
) {
  const idp = await startOidcProvider({ clientId: "hs", clientSecret: SECRET });
  idp.users.set("alice", ALICE);
  // Set once the control plane exists (its server_url needs this listener's port).
  // deno-lint-ignore prefer-const
  let route: ((req: IncomingMessage, res: ServerResponse) => void) | undefined;
  const http = createServer((req, res) => route!(req, res));
  await new Promise<void>((r) => http.listen(0, "127.0.0.1", r));
  const web = `http://127.0.0.1:${(http.address() as { port: number }).port}`;
  const yaml = `server_url: ${web}\n${opts.extra ?? ""}oidc:\n  issuer: ${idp.issuer}\n` +
    `  client_id: hs\n  client_secret: ${SECRET}\n${oidcYaml}`;
  const { config } = parseConfigText(yaml, { env: {} });
  const logs: string[] = [];
  const log = createLogger({ level: "debug", write: (l) => logs.push(l) });
  const oidc = await startOidc(config, log);
  const t = await startTestControl({ configYaml: yaml, oidc, log });
  route = (req, res) => {
    const path = (req.url ?? "/").split("?")[0];
    if (path.startsWith("/register/")) t.control.registerPage(req, res);
    else if (path.startsWith("/auth/")) t.control.authPage(req, res);
    else if (path === "/oidc/callback") t.control.oidcCallback(req, res);
    else if (path === "/oidc/confirm") t.control.oidcConfirm(req, res);
    else res.writeHead(404).end();
  };
  try {
    await fn({ t, idp, web, logs });
    // No log line ever carries the client secret, a code or a token.
    const all = logs.join("\n");
    assert.ok(!all.includes(SECRET), "the client secret was logged");
    assert.ok(!/eyJ[\w-]+\.eyJ/.test(all), "a JWT was logged");
    assert.ok(!/[?&]code=/.test(all), "an authorization code was logged");
  } finally {
    await t.close();
    http.closeAllConnections();
    await new Promise((r) => http.close(r));
    await idp.close();
  }
}

function body(nodeKey: string, extra: Record<string, unknown> = {}) {
  return {
    Version: 130,
    NodeKey: nodeKey,
    OldNodeKey: ZERO_NODEKEY,
    Expiry: "0001-01-01T00:00:00Z",
    Followup: "",
    Hostinfo: { Hostname: "laptop", OS: "linux" },
    ...extra,
  };
}

async function register(t: TestControl, mkey: MachineKey, b: unknown) {
  const reply = await t.connect(mkey).register(b as Record<string, unknown>);
  return JSON.parse(reply.text) as RegisterResponse;
}

/** A machine asks to log in: its AuthURL, and its Followup waiting for the outcome. */
async function startLogin(t: TestControl, mkey = randomKey("mkey:"), nkey = randomKey("nodekey:")) {
  const first = await register(t, mkey, body(nkey));
  assert.match(first.AuthURL ?? "", /\/register\/[A-Za-z0-9]+$/);
  // Left waiting by a refused login until the control plane closes.
  const followup = register(t, mkey, body(nkey, { Followup: first.AuthURL })).catch(() =>
    ({}) as RegisterResponse
  );
  return { mkey, nkey, authUrl: first.AuthURL!, followup };
}

/** The browser: opens `url` (302 to the provider with a cookie), returns where it goes. */
async function openLoginLink(url: string) {
  const r = await fetch(url, { redirect: "manual" });
  await r.body?.cancel();
  assert.equal(r.status, 302, `${url} did not redirect to the provider`);
  const cookie = (r.headers.get("set-cookie") ?? "").split(";")[0];
  return { provider: r.headers.get("location")!, cookie, setCookie: r.headers.get("set-cookie")! };
}

async function callback(url: URL | string, cookie: string) {
  const r = await fetch(url, { headers: cookie ? { cookie } : {} });
  const html = await r.text();
  // The confirmation page's one-time token and its cookie (SameSite=Strict, /oidc/confirm only).
  const token = /name="token" value="([0-9a-f]+)"/.exec(html)?.[1];
  const confirmCookie = r.headers.getSetCookie().map((c) => c.split(";")[0])
    .find((c) => c.startsWith("headscale_oidc_confirm=") && !c.endsWith("="));
  return { status: r.status, html, token, confirmCookie };
}

async function confirm(w: World, token: string, cookie: string | undefined) {
  const r = await fetch(`${w.web}/oidc/confirm`, {
    method: "POST",
    headers: {
      "content-type": "application/x-www-form-urlencoded",
      ...(cookie ? { cookie } : {}),
    },
    body: new URLSearchParams({ token }).toString(),
  });
  return { status: r.status, html: await r.text() };
}

/** The whole browser journey as `username`, confirming the registration when asked. */
async function browserLogin(w: World, authUrl: string, username = "alice") {
  const { provider, cookie } = await openLoginLink(authUrl);
  const back = await w.idp.login(provider, username);
  const page = await callback(back, cookie);
  if (page.status !== 200 || !page.token) return page;
  return await confirm(w, page.token, page.confirmCookie);
}

Deno.test("oidc login: an allowed user's login registers the waiting machine to them", async () => {
  await withWorld("  allowed_domains: [example.com]\n", async (w) => {
    const { t } = w;
    const login = await startLogin(t);
    const { provider, setCookie } = await openLoginLink(login.authUrl);
    assert.ok(provider.startsWith(w.idp.issuer + "/authorize?"));
    assert.match(setCookie, /HttpOnly/);
    assert.match(setCookie, /SameSite=Lax/);
    assert.match(setCookie, /Path=\/oidc\/callback/);
    const page = await browserLogin(w, login.authUrl);
    assert.equal(page.status, 200, page.html);
    assert.match(page.html, /Machine registered/);
    const done = await login.followup;
    assert.equal(done.MachineAuthorized, true);
    const node = t.state.nodeByMachineKey(login.mkey)!;
    assert.equal(node.registerMethod, "oidc");
    const user = t.state.getUser(node.userId!)!;
    assert.deepEqual(
      [user.name, user.displayName, user.email, user.provider, user.providerId, user.profilePicUrl],
      [
        "alice",
        "Alice Example",
        "alice@example.com",
        "oidc",
        `${w.idp.issuer}/sub-alice`,
        "https://pics.example/alice.png",
      ],
    );
    assert.equal(done.User.DisplayName, "Alice Example");
    assert.equal(done.Login.ProfilePicURL, "https://pics.example/alice.png");

    // Re-login (a new node key): the same node, the same user, profile kept in step.
    w.idp.users.set("alice", { ...ALICE, name: "Alice Renamed" });
    const again = await startLogin(t, login.mkey);
    const second = await browserLogin(w, again.authUrl);
    assert.equal(second.status, 200, second.html);
    assert.equal((await again.followup).MachineAuthorized, true);
    const same = t.state.nodeByMachineKey(login.mkey)!;
    assert.equal(same.id, node.id);
    assert.equal(same.nodeKey, again.nkey);
    assert.equal(t.state.getUser(same.userId!)!.displayName, "Alice Renamed");
    assert.equal(t.state.listUsers().length, 1);
  });
});

Deno.test("oidc login: identity is issuer + subject, never the e-mail or the name", async () => {
  await withWorld("", async (w) => {
    const { t } = w;
    // A user made with `users create` named like the OIDC account is never taken over.
    const local = await t.state.createUser({ name: "alice", email: "alice@example.com" });
    const first = await startLogin(t);
    assert.equal((await browserLogin(w, first.authUrl)).status, 200);
    await first.followup;
    const owner = t.state.getUser(t.state.nodeByMachineKey(first.mkey)!.userId!)!;
    assert.notEqual(owner.id, local.id);
    assert.notEqual(owner.name, "alice");
    // Another account at the provider with the same e-mail (and username) is another user.
    w.idp.users.set("mallory", { ...ALICE, sub: "sub-mallory" });
    const second = await startLogin(t);
    assert.equal((await browserLogin(w, second.authUrl, "mallory")).status, 200);
    await second.followup;
    const other = t.state.getUser(t.state.nodeByMachineKey(second.mkey)!.userId!)!;
    assert.notEqual(other.id, owner.id);
    assert.notEqual(other.id, local.id);
    assert.equal(t.state.listUsers().length, 3);
  });
});

Deno.test("oidc login: users outside the allow-lists see why; nothing is registered", async () => {
  const cases: [string, UserClaims, RegExp][] = [
    ["  allowed_domains: [example.org]\n", ALICE, /domain of your e-mail address is not allowed/],
    ["  allowed_users: [bob@example.com]\n", ALICE, /not among the users allowed/],
    ["  allowed_groups: [admins]\n", ALICE, /not in any of the groups allowed/],
    [
      "  allowed_domains: [example.com]\n",
      { ...ALICE, email_verified: false },
      /e-mail address is not verified/,
    ],
  ];
  for (const [yaml, claims, reason] of cases) {
    await withWorld(yaml, async (w) => {
      w.idp.users.set("alice", claims);
      const login = await startLogin(w.t);
      const page = await browserLogin(w, login.authUrl);
      assert.equal(page.status, 403);
      assert.match(page.html, reason);
      assert.equal(w.t.state.nodeByMachineKey(login.mkey), undefined);
      assert.equal(w.t.state.listUsers().length, 0);
      assert.ok(w.logs.some((l) => /OIDC login refused by the allow-lists/.test(l)));
    });
  }
});

Deno.test("oidc login: replayed, forged, cross-browser and expired callbacks are refused", async () => {
  await withWorld("  pkce:\n    enabled: true\n", async (w) => {
    const { t } = w;
    const login = await startLogin(t);
    const { provider, cookie } = await openLoginLink(login.authUrl);
    assert.equal(new URL(provider).searchParams.get("code_challenge_method"), "S256");
    const back = await w.idp.login(provider, "alice");
    // Another browser (no cookie, or another one) cannot use the callback...
    const noCookie = await callback(back, "");
    assert.equal(noCookie.status, 403);
    assert.match(noCookie.html, /another browser/);
    // ...and the state is single use, spent even by a refused callback: the browser starts over.
    const replay = await callback(back, cookie);
    assert.equal(replay.status, 400);
    assert.match(replay.html, /unknown, already used or expired/);
    // Cross-browser: a cookie of another login.
    const second = await openLoginLink(login.authUrl);
    const back2 = await w.idp.login(second.provider, "alice");
    const wrong = await callback(back2, second.cookie.replace(/=.*/, "=00"));
    assert.equal(wrong.status, 403);
    assert.match(wrong.html, /another browser/);
    // A forged state.
    const forged = await callback(`${w.web}/oidc/callback?code=x&state=made-up`, cookie);
    assert.equal(forged.status, 400);
    assert.equal(t.state.nodeByMachineKey(login.mkey), undefined);
    // The registration id is gone (rejected here; expired is the same): the login fails.
    const third = await openLoginLink(login.authUrl);
    const back3 = await w.idp.login(third.provider, "alice");
    await t.control.authRequests.reject(/\/register\/(\w+)$/.exec(login.authUrl)![1]);
    const late = await callback(back3, third.cookie);
    assert.equal(late.status, 410);
    assert.match(late.html, /expired or was already decided/);
    assert.equal(t.state.nodeByMachineKey(login.mkey), undefined);
    assert.ok(w.logs.some((l) => /without the browser's login cookie/.test(l)));
  });
});

Deno.test("oidc login: a forged ID token is refused with a clear page", async () => {
  await withWorld("", async (w) => {
    w.idp.tamper = { foreignKey: true };
    const login = await startLogin(w.t);
    const page = await browserLogin(w, login.authUrl);
    assert.equal(page.status, 403);
    assert.match(page.html, /could not be verified/);
    assert.equal(w.t.state.nodeByMachineKey(login.mkey), undefined);
  });
});

Deno.test("oidc login: use_expiry_from_token gives the node the ID token's expiry", async () => {
  await withWorld("  use_expiry_from_token: true\n", async (w) => {
    const login = await startLogin(w.t);
    assert.equal((await browserLogin(w, login.authUrl)).status, 200);
    await login.followup;
    const expiry = w.t.state.nodeByMachineKey(login.mkey)!.expiry!;
    const inAnHour = Date.now() + 3600_000;
    assert.ok(Math.abs(expiry.getTime() - inAnHour) < 60_000, expiry.toISOString());
  });
});

Deno.test("oidc login: a provider down at start refuses the start, or logins until it is back", async () => {
  const idp = await startOidcProvider({ clientId: "hs", clientSecret: SECRET });
  idp.down = true;
  try {
    const yaml = (only: boolean) =>
      `oidc:\n  issuer: ${idp.issuer}\n  client_id: hs\n  client_secret: ${SECRET}\n` +
      `  only_start_if_oidc_is_available: ${only}\n`;
    const log = createLogger({ level: "error", write: () => {} });
    await assert.rejects(
      startOidc(parseConfigText(yaml(true), { env: {} }).config, log),
      /oidc\.issuer: the provider is not available/,
    );
    const client = await startOidc(parseConfigText(yaml(false), { env: {} }).config, log);
    assert.equal(client?.available, false);
  } finally {
    await idp.close();
  }
});

Deno.test("oidc login: client_secret_path is read (trimmed) at start", async () => {
  const dir = await Deno.makeTempDir();
  const idp = await startOidcProvider({ clientId: "hs", clientSecret: SECRET });
  try {
    await Deno.writeTextFile(`${dir}/secret`, SECRET + "\n");
    const yaml = `oidc:\n  issuer: ${idp.issuer}\n  client_id: hs\n` +
      `  client_secret_path: "\${CREDENTIALS_DIRECTORY}/secret"\n`;
    const log = createLogger({ level: "error", write: () => {} });
    const cfg = parseConfigText(yaml, { env: { CREDENTIALS_DIRECTORY: dir } }).config;
    assert.equal((await startOidc(cfg, log))?.available, true);
    const missing = parseConfigText(yaml, { env: { CREDENTIALS_DIRECTORY: "/nonexistent" } });
    await assert.rejects(startOidc(missing.config, log), /oidc\.client_secret_path: cannot read/);
  } finally {
    await idp.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("oidc login: nothing is registered until the browser that logged in confirms it", async () => {
  await withWorld("", async (w) => {
    const { t } = w;
    const login = await startLogin(t);
    const { provider, cookie } = await openLoginLink(login.authUrl);
    const page = await callback(await w.idp.login(provider, "alice"), cookie);
    assert.equal(page.status, 200, page.html);
    assert.match(page.html, /Register <b>laptop<\/b> to <b>Alice Example<\/b>\?/);
    assert.ok(page.token && page.confirmCookie, "a one-time token and its cookie");
    assert.equal(t.state.nodeByMachineKey(login.mkey), undefined, "not before the confirmation");

    // Another browser (a forged cross-site POST carries no SameSite=Strict cookie) is refused,
    // and the token is spent by it.
    const forged = await confirm(w, page.token!, undefined);
    assert.equal(forged.status, 403);
    assert.match(forged.html, /not sent from the browser that logged in/);
    const replay = await confirm(w, page.token!, page.confirmCookie);
    assert.equal(replay.status, 400);
    assert.equal(t.state.nodeByMachineKey(login.mkey), undefined);
    assert.ok(w.logs.some((l) => /OIDC confirmation without the browser's cookie/.test(l)));

    // Logging in again and confirming from the same browser registers the machine.
    const done = await browserLogin(w, login.authUrl);
    assert.equal(done.status, 200, done.html);
    assert.match(done.html, /Machine registered/);
    assert.equal((await login.followup).MachineAuthorized, true);
  });
});
