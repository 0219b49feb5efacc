/**
 * The admin UI's sign-in and security model, over HTTP against a real server: the one-time link
 * (once, only once, and it expires), the session cookie's flags, expiry and revocation, CSRF and
 * cross-site refusals that change nothing, the CSP, allowed_ips, a disabled UI, and OIDC admin
 * sign-in allowed and refused by admin_ui.oidc's lists.
 */
import assert from "node:assert/strict";
import { Browser, signInWithLink, startUiServer } from "./helpers/ui.ts";
import { AdminSessions, SigninLinks } from "../lib/ui/sessions.ts";
import { openStore } from "../lib/store/mod.ts";
import { startOidcProvider } from "./helpers/oidc_provider.ts";

Deno.test("ui: a one-time link signs in once and only once; the cookie is HttpOnly, Secure, SameSite=Strict", async () => {
  const ui = await startUiServer();
  try {
    const b = new Browser(ui.base);
    // Not signed in: pages send the browser to the sign-in page.
    const first = await b.get("/admin/machines");
    await first.body?.cancel();
    assert.equal(first.status, 303);
    assert.equal(first.headers.get("location"), "/admin/signin");

    const { code, out } = await ui.cli("admin", "signin-link", "--label", "alice");
    assert.equal(code, 0);
    const link = new URL(out.trim());
    assert.equal(link.origin, ui.base);
    assert.equal(link.pathname, "/admin/signin/link");
    const token = link.searchParams.get("token")!;
    // Opening the link uses nothing up (previews fetch links): twice, still valid.
    for (let i = 0; i < 2; i++) {
      const page = await b.page(link.pathname + link.search);
      assert.equal(page.status, 200);
      assert.match(page.text, /id="signin-link"/);
    }
    const res = await b.post("/admin/signin/link", { token });
    await res.body?.cancel();
    assert.equal(res.status, 303);
    const setCookie = res.headers.getSetCookie().find((c) => c.startsWith("headscale_admin="))!;
    assert.match(setCookie, /; HttpOnly/);
    assert.match(setCookie, /; Secure/);
    assert.match(setCookie, /; SameSite=Strict/);
    assert.match(setCookie, /; Path=\/admin(;|$)/);
    const page = await b.page("/admin/machines");
    assert.equal(page.status, 200);
    assert.match(page.text, /<span data-admin>alice<\/span>/);

    // Used up: a second browser with the same token is refused, and gets no session.
    const other = new Browser(ui.base);
    const again = await other.post("/admin/signin/link", { token });
    assert.equal(again.status, 400);
    await again.body?.cancel();
    assert.equal(other.cookies.size, 0);
    const stillOut = await other.get("/admin/machines");
    await stillOut.body?.cancel();
    assert.equal(stillOut.status, 303);
    // A forged token of the right shape is refused too.
    const forged = await other.post("/admin/signin/link", {
      token: token.slice(0, 13) + "0".repeat(64),
    });
    await forged.body?.cancel();
    assert.equal(forged.status, 400);

    const audit = JSON.parse((await ui.cli("audit", "list", "-o", "json")).out);
    const actions = audit.map((e: { action: string }) => e.action);
    assert.ok(actions.includes("signin"));
    assert.ok(actions.filter((a: string) => a === "signin.failed").length >= 2);
    const signin = audit.find((e: { action: string }) => e.action === "signin");
    assert.equal(signin.actor, "link:alice");
    assert.equal(signin.clientAddr, "127.0.0.1");
  } finally {
    await ui.close();
  }
});

Deno.test("ui: a sign-in link expires after 10 minutes; a token is stored hashed", async () => {
  let now = 1_000_000;
  const links = new SigninLinks({ now: () => now });
  const { token, expiresAt } = await links.create("admin");
  assert.equal(expiresAt.getTime(), now + 10 * 60_000);
  now += 10 * 60_000 - 1;
  assert.equal(await links.valid(token), true);
  now += 1;
  assert.equal(await links.valid(token), false);
  assert.equal(await links.redeem(token), null);
  const fresh = await links.create("bob");
  assert.equal(await links.redeem(fresh.token), "bob");
  assert.equal(await links.redeem(fresh.token), null);
});

Deno.test("ui: sessions survive a restart hashed, expire after session_duration, and can be revoked", async () => {
  const store = await openStore({
    type: "sqlite",
    sqlite: { path: ":memory:", writeAheadLog: false },
  });
  await store.migrate();
  try {
    let now = new Date("2026-01-01T00:00:00Z");
    const sessions = new AdminSessions({ store, durationMs: 3600_000, now: () => now });
    const { record, cookie } = await sessions.create({
      identity: "link:admin",
      displayName: "admin",
      clientAddr: "::1",
    });
    const [row] = await store.listAdminSessions();
    assert.ok(!row.hash.includes(cookie.split(".")[1]), "the secret is not stored");
    assert.equal(row.prefix, cookie.split(".")[0]);

    // A new instance over the same database (a restart) knows the session.
    const restarted = new AdminSessions({ store, durationMs: 3600_000, now: () => now });
    await restarted.load();
    const admin = await restarted.check(cookie);
    assert.equal(admin?.sessionId, record.id);
    // One character of the secret changed (never to itself: 1 cookie in 64 ends in "0").
    const tampered = cookie.slice(0, -1) + (cookie.endsWith("0") ? "1" : "0");
    assert.equal(await restarted.check(tampered), null);

    now = new Date(now.getTime() + 3600_000);
    assert.equal(await restarted.check(cookie), null, "expired");
    assert.deepEqual(await store.listAdminSessions(), [], "an expired session is deleted");

    const second = await restarted.create({ identity: "x", displayName: "x", clientAddr: "" });
    assert.ok(await restarted.check(second.cookie));
    assert.equal(await restarted.revoke(second.record.id), true);
    assert.equal(await restarted.check(second.cookie), null);
  } finally {
    await store.close();
  }
});

Deno.test("ui: revoking a session (CLI) and signing out end it; the sign-out needs the CSRF token", async () => {
  const ui = await startUiServer();
  try {
    const a = new Browser(ui.base);
    const b = new Browser(ui.base);
    await signInWithLink(ui, a, "a");
    await signInWithLink(ui, b, "b");
    const sessions = JSON.parse((await ui.cli("admin", "sessions", "-o", "json")).out);
    assert.equal(sessions.length, 2);
    const bId = sessions.find((s: { displayName: string }) => s.displayName === "b").id;
    assert.equal((await ui.cli("admin", "revoke-session", "--id", String(bId))).code, 0);
    const bPage = await b.get("/admin/machines");
    await bPage.body?.cancel();
    assert.equal(bPage.status, 303, "a revoked session is signed out");

    // Sign-out without the token changes nothing.
    const forged = await a.post("/admin/signout", {});
    await forged.body?.cancel();
    assert.equal(forged.status, 403);
    assert.equal((await a.page("/admin/machines")).status, 200);
    const out = await a.submit("/admin/signout");
    assert.equal(out.status, 303);
    assert.equal(a.cookies.has("headscale_admin"), false, "the cookie is cleared");
    assert.equal(JSON.parse((await ui.cli("admin", "sessions", "-o", "json")).out).length, 0);
    const actions = JSON.parse((await ui.cli("audit", "list", "-o", "json")).out)
      .map((e: { action: string }) => e.action);
    assert.ok(actions.includes("signout"));
  } finally {
    await ui.close();
  }
});

Deno.test("ui: a POST without the CSRF token, or from another site, is 403 and changes nothing", async () => {
  const ui = await startUiServer();
  try {
    const b = new Browser(ui.base);
    await signInWithLink(ui, b);
    const csrf = await b.csrf();
    const attempts: [Record<string, string>, Record<string, string>][] = [
      [{ name: "mallory" }, {}],
      [{ name: "mallory", csrf: csrf.slice(0, -1) + (csrf.endsWith("x") ? "y" : "x") }, {}],
      [{ name: "mallory", csrf }, { origin: "https://evil.example" }],
      [{ name: "mallory", csrf }, { "sec-fetch-site": "cross-site" }],
      [{ name: "mallory", csrf }, { origin: "null" }],
    ];
    for (const [fields, headers] of attempts) {
      const res = await b.post("/admin/users/create", fields, headers);
      await res.body?.cancel();
      assert.equal(res.status, 403, JSON.stringify({ fields, headers }));
    }
    assert.deepEqual(ui.server.state.listUsers(), []);
    const refused = JSON.parse((await ui.cli("audit", "list", "-o", "json")).out)
      .filter((e: { action: string }) => e.action === "request.refused");
    assert.equal(refused.length, attempts.length);
    // With the token from the page it works.
    const ok = await b.post("/admin/users/create", { name: "alice", csrf });
    await ok.body?.cancel();
    assert.equal(ok.status, 303);
    assert.deepEqual(ui.server.state.listUsers().map((u) => u.name), ["alice"]);
  } finally {
    await ui.close();
  }
});

Deno.test("ui: every response carries the strict CSP and security headers; assets are hashed and cached", async () => {
  const ui = await startUiServer();
  try {
    const b = new Browser(ui.base);
    const anonymous = await b.page("/admin/signin");
    await signInWithLink(ui, b);
    const pages = [anonymous.res];
    for (
      const path of [
        "/admin/machines",
        "/admin/users",
        "/admin/keys",
        "/admin/pending",
        "/admin/nope",
      ]
    ) {
      const r = await b.get(path);
      await r.body?.cancel();
      pages.push(r);
    }
    for (const res of pages) {
      assert.equal(
        res.headers.get("content-security-policy"),
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: https:; " +
          "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        res.url,
      );
      assert.equal(res.headers.get("x-content-type-options"), "nosniff");
      assert.equal(res.headers.get("referrer-policy"), "same-origin");
      assert.equal(res.headers.get("cache-control"), "no-store", res.url);
    }
    const html = (await b.page("/admin/machines")).text;
    assert.doesNotMatch(html, /<script>|\sstyle="|\son[a-z]+="/, "no inline script or style");
    const css = /href="(\/admin\/assets\/[0-9a-f]{16}\/ui\.css)"/.exec(html)![1];
    const js = /src="(\/admin\/assets\/[0-9a-f]{16}\/ui\.js)"/.exec(html)![1];
    for (const path of [css, js]) {
      const r = await fetch(ui.base + path);
      await r.body?.cancel();
      assert.equal(r.status, 200);
      assert.match(r.headers.get("cache-control")!, /max-age=31536000, immutable/);
    }
    const stale = await fetch(ui.base + css.replace(/[0-9a-f]{16}/, "0".repeat(16)));
    await stale.body?.cancel();
    assert.equal(stale.status, 404);
  } finally {
    await ui.close();
  }
});

Deno.test("ui: admin_ui.allowed_ips refuses other addresses with 404; enabled: false is 404 everywhere", async () => {
  const fenced = await startUiServer('admin_ui:\n  allowed_ips: [10.0.0.0/8, "192.0.2.1"]\n');
  try {
    for (const path of ["/admin", "/admin/", "/admin/signin", "/admin/machines"]) {
      const r = await fetch(fenced.base + path, { redirect: "manual" });
      await r.body?.cancel();
      assert.equal(r.status, 404, path);
    }
    // The link is still made (the CLI is local), but cannot be used from here.
    const { out } = await fenced.cli("admin", "signin-link");
    const r = await fetch(out.trim());
    await r.body?.cancel();
    assert.equal(r.status, 404);
  } finally {
    await fenced.close();
  }
  const allowed = await startUiServer("admin_ui:\n  allowed_ips: [127.0.0.0/8]\n");
  try {
    const r = await fetch(allowed.base + "/admin/signin");
    await r.body?.cancel();
    assert.equal(r.status, 200);
  } finally {
    await allowed.close();
  }
  const off = await startUiServer("admin_ui:\n  enabled: false\n");
  try {
    for (const path of ["/admin", "/admin/signin", "/admin/machines"]) {
      const r = await fetch(off.base + path, { redirect: "manual" });
      await r.body?.cancel();
      assert.equal(r.status, 404, path);
    }
    const { code, err } = await off.cli("admin", "signin-link");
    assert.equal(code, 1);
    assert.match(err, /admin UI is disabled/);
  } finally {
    await off.close();
  }
});

async function oidcSignin(
  extra: string,
  username: string,
  claims: Record<string, unknown> & { sub: string },
) {
  const idp = await startOidcProvider({ clientId: "hs", clientSecret: "secret" });
  idp.users.set(username, claims);
  const ui = await startUiServer(
    `oidc:\n  issuer: ${idp.issuer}\n  client_id: hs\n  client_secret: secret\n${extra}`,
  );
  const b = new Browser(ui.base);
  const start = await b.get("/admin/signin/oidc");
  await start.body?.cancel();
  return { idp, ui, b, start };
}

Deno.test("ui: OIDC admin sign-in is allowed by admin_ui.oidc's lists and the admin is issuer + subject", async () => {
  const { idp, ui, b, start } = await oidcSignin(
    "admin_ui:\n  oidc:\n    allowed_users: [alice@example.com]\n",
    "alice",
    { sub: "sub-alice", email: "alice@example.com", email_verified: true, name: "Alice" },
  );
  try {
    assert.equal(start.status, 302);
    const auth = new URL(start.headers.get("location")!);
    assert.equal(auth.searchParams.get("redirect_uri"), `${ui.base}/admin/signin/oidc/callback`);
    const back = await idp.login(auth.toString(), "alice");
    const done = await b.get(back.pathname + back.search);
    const text = await done.text();
    assert.equal(done.status, 200, text);
    assert.match(text, /data-autofollow/);
    assert.match(done.headers.getSetCookie().join("\n"), /headscale_admin=[0-9a-f]{12}\./);
    const page = await b.page("/admin/machines");
    assert.equal(page.status, 200);
    assert.match(page.text, /<span data-admin>alice@example.com<\/span>/);
    const [session] = JSON.parse((await ui.cli("admin", "sessions", "-o", "json")).out);
    assert.equal(session.identity, `oidc:${idp.issuer}/sub-alice`);
    // Signing in does not make the admin a tailnet user.
    assert.deepEqual(ui.server.state.listUsers(), []);
    // The state is single-use: replaying the callback signs nobody in.
    const replay = new Browser(ui.base);
    const again = await replay.get(back.pathname + back.search);
    await again.body?.cancel();
    assert.equal(again.status, 400);
    assert.equal(replay.cookies.has("headscale_admin"), false);
  } finally {
    await ui.close();
    await idp.close();
  }
});

Deno.test("ui: OIDC admin sign-in refuses users outside the lists, and is off when no list is set", async () => {
  const { idp, ui, b, start } = await oidcSignin(
    "admin_ui:\n  oidc:\n    allowed_groups: [admins]\n",
    "bob",
    { sub: "sub-bob", email: "bob@example.com", email_verified: true, groups: ["users"] },
  );
  try {
    const back = await idp.login(start.headers.get("location")!, "bob");
    const done = await b.get(back.pathname + back.search);
    const text = await done.text();
    assert.equal(done.status, 403);
    assert.match(text, /not in any of the groups/);
    assert.equal(b.cookies.has("headscale_admin"), false);
    const failed = JSON.parse((await ui.cli("audit", "list", "-o", "json")).out)
      .find((e: { action: string }) => e.action === "signin.failed");
    assert.equal(failed.actor, `oidc:${idp.issuer}/sub-bob`);
    assert.match(failed.details, /group/);
  } finally {
    await ui.close();
    await idp.close();
  }
  // OIDC configured for nodes, but no admin_ui.oidc list: fail closed.
  const off = await oidcSignin("", "carol", { sub: "c", email: "c@example.com" });
  try {
    assert.equal(off.start.status, 404);
    assert.equal(off.start.headers.get("location"), null);
    assert.doesNotMatch((await off.b.page("/admin/signin")).text, /signin-oidc/);
  } finally {
    await off.ui.close();
    await off.idp.close();
  }
});
