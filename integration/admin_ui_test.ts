/**
 * The admin web UI in headless Chromium (Debian's package, driven by playwright-core) against our
 * server, with real Tailscale clients: sign in with a one-time link; create a user and a pre-auth
 * key, and watch the machine that joins with it come online in the open Machines page; approve an
 * interactive login; a bad policy refused at its line; a forged POST without the CSRF token
 * refused; every page at desktop and phone width without a console error or CSP violation.
 * Screenshots of every step are kept in `.artifacts/ui/admin-ui/` (integration/support/browser.ts).
 */
import assert from "node:assert/strict";
import { integrationSkipReason, withHarness } from "./harness.ts";
import { type ControlServer, startControlServer } from "./support/control_server.ts";
import {
  browserSkipReason,
  launchBrowser,
  type Page,
  type UiBrowser,
  waitForText,
} from "./support/browser.ts";

const skipReason = (await integrationSkipReason()) ?? (await browserSkipReason());
if (skipReason) console.log(`admin UI browser tests skipped: ${skipReason}`);
const ignore = skipReason !== undefined;

const SESSION_COOKIE = "headscale_admin";
const AUTH_URL = /\/register\/([A-Za-z0-9_-]+)$/;

/** Lets every node reach every other: what the tailnet runs with before the bad draft. */
const GOOD_POLICY = `{
  // Everyone reaches everything (saved from the admin UI).
  "acls": [
    {"action": "accept", "src": ["*"], "dst": ["*:*"]},
  ],
}
`;

/** Line 5 names a group that is not defined. */
const BAD_POLICY = `{
  "groups": {"group:ops": ["alice@"]},
  "acls": [
    {"action": "accept", "src": ["group:ops"], "dst": ["*:*"]},
    {"action": "accept", "src": ["group:eng"], "dst": ["*:22"]},
  ],
}
`;

/** `admin signin-link`: a one-time link to `<server_url>/admin/signin/link?token=…`. */
async function signinLink(server: ControlServer): Promise<string> {
  const { url } = await server.cli<{ url?: string }>(["admin", "signin-link"]);
  assert.ok(typeof url === "string" && url.startsWith(`${server.url}/admin/signin/link?`));
  return url;
}

/** Opens the link, presses its button, and returns the page the browser lands on signed in. */
async function signIn(browser: UiBrowser, link: string): Promise<Page> {
  const page = await browser.newPage();
  const response = await page.goto(link);
  assert.equal(response?.status(), 200, `the sign-in link's page answered ${response?.status()}`);
  await browser.screenshot(page, "signin-link");
  await Promise.all([
    page.waitForURL((u) => !u.pathname.startsWith("/admin/signin")),
    page.click("#signin-link"),
  ]);
  await page.locator("[data-admin]").waitFor();
  return page;
}

/** Goes to `path` below the UI and checks it answered `status`. */
async function visit(page: Page, server: ControlServer, path: string, status = 200) {
  const response = await page.goto(`${server.url}/admin${path}`);
  assert.equal(response?.status(), status, `GET /admin${path} answered ${response?.status()}`);
  assert.ok(!new URL(page.url()).pathname.startsWith("/admin/signin"), `signed out at ${path}`);
}

/** Submits the form `button` is in, and waits for the page the POST leads to. */
async function submit(page: Page, button: string) {
  await Promise.all([page.waitForNavigation(), page.click(button)]);
}

/** The flash message after a redirect. */
async function flash(page: Page): Promise<string> {
  return (await page.locator("main .flash").first().innerText()).trim();
}

Deno.test({
  name:
    "admin UI in Chromium: sign in, user and key, live join, approve a login, bad policy, CSRF, every page",
  ignore,
  fn: (t) =>
    withHarness({ name: "admin-ui" }, async (h) => {
      const server = await startControlServer(h, { extraConfig: "policy:\n  mode: database" });
      // The session cookie is Secure; the test server speaks plain http on the bridge address,
      // which the browser (in the root namespace) reaches like the clients in their namespaces.
      const browser = await launchBrowser({ name: "admin-ui", secureOrigins: [server.url] });
      h.onClose(async () => {
        await browser.close();
        console.log(`admin UI screenshots: ${browser.artifactsDir}`);
      });
      const step = async (name: string, fn: () => Promise<void>) => {
        if (await t.step(name, fn)) return;
        // What every open tab showed when the step failed, next to the steps' screenshots.
        for (const [i, tab] of browser.context.pages().entries()) {
          await browser.screenshot(tab, `failed-tab-${i + 1}`, { area: "page" }).catch(() => {});
        }
        throw new Error(`step failed: ${name}`);
      };
      let page!: Page;

      await step("sign in with a one-time link; the same link again is refused", async () => {
        const link = await signinLink(server);
        page = await signIn(browser, link);
        await browser.screenshot(page, "signed-in");
        const cookies = await browser.context.cookies();
        const session = cookies.find((c) => c.name === SESSION_COOKIE);
        assert.ok(session, `no session cookie: ${JSON.stringify(cookies.map((c) => c.name))}`);
        assert.equal(session.httpOnly, true);
        assert.equal(session.secure, true);
        assert.equal(session.sameSite, "Strict");
        assert.equal(session.path, "/admin");

        // The same link in another browser (no cookies): refused, and no way to sign in.
        const other = await browser.newPage({ isolated: true });
        const again = await other.goto(link);
        assert.equal(again?.status(), 400);
        assert.match(await other.locator("[role=alert]").innerText(), /already used|expired/);
        assert.equal(await other.locator("#signin-link").count(), 0);
        await browser.screenshot(other, "signin-link-used");
        await other.close();
        // The browser reports the refused page's status (400) in the console: expected here.
        const refused = browser.takeProblems();
        assert.ok(
          refused.every((p) => /status of 400 .*\/admin\/signin\/link\?/.test(p.text)),
          JSON.stringify(refused),
        );
        assert.deepEqual(await server.cli(["admin", "sessions"]).then((s) => (s as []).length), 1);
      });

      // Open before anything joins, and never reloaded: what appears here came as a live update.
      const machines = await browser.newPage();
      await step("the Machines page is open and listening", async () => {
        await visit(machines, server, "/machines");
        await waitForText(machines, "#live-status", "live");
        await machines.evaluate(() => Object.assign(globalThis, { notReloaded: true }));
        await browser.screenshot(machines, "machines-empty");
      });

      let key = "";
      await step("create a user and a pre-auth key; the key is shown once", async () => {
        await visit(page, server, "/users");
        await page.fill("#user-name", "alice");
        await page.fill("#user-email", "alice@example.com");
        await submit(page, "form[action='/admin/users/create'] button[type=submit]");
        assert.match(await flash(page), /User alice created/);
        await waitForText(page, "#users tr[data-user-id]", "alice");
        await browser.screenshot(page, "users");

        await visit(page, server, "/keys");
        await page.selectOption("#key-user", { label: "alice" });
        await page.check("#key-reusable");
        await submit(page, "#create-preauth-key");
        key = (await page.locator("#new-key").innerText()).trim();
        assert.match(key, /^hskey-auth-/);
        const up = (await page.locator("#tailscale-up").innerText()).trim();
        assert.ok(up.includes(`--login-server=${server.url}`) && up.endsWith(`--authkey=${key}`));
        await browser.screenshot(page, "key-created");
        // Shown once: the list has it masked, nowhere in full.
        await visit(page, server, "/keys");
        await waitForText(page, "#preauth-keys tr[data-key-id]", "alice");
        assert.ok(!(await page.content()).includes(key), "the key is shown again on /keys");
        await browser.screenshot(page, "keys");
      });

      await step(
        "a real tailscaled joins with that key and comes online in the open page",
        async () => {
          const [client] = await h.addClients(["ui-alpha"]);
          await client.up({ loginServer: server.url, authKey: key });
          const node = await server.nodeByHostname("ui-alpha");
          const row = machines.locator(`#machines tr[data-node-id="${node.id}"]`);
          await row.locator('td[data-online="true"]').waitFor({ timeout: 20_000 });
          assert.match(await row.innerText(), /ui-alpha/);
          assert.match(await row.innerText(), /alice/);
          assert.ok(
            await machines.evaluate(() => "notReloaded" in globalThis),
            "the page reloaded",
          );
          await browser.screenshot(machines, "machines-live");
        },
      );

      await step("approve an interactive login; the blocked tailscale up completes", async () => {
        const [client] = await h.addClients(["ui-bravo"]);
        const login = client.startLogin({ loginServer: server.url });
        const authId = AUTH_URL.exec(await login.authUrl())?.[1];
        assert.ok(authId, "no AuthURL");
        await visit(page, server, "/pending");
        const row = page.locator(`#pending-logins tr[data-auth-id="${authId}"]`);
        await row.waitFor();
        assert.match(await row.innerText(), /ui-bravo/);
        await row.locator("select[name=user]").selectOption({ label: "alice" });
        await browser.screenshot(page, "pending");
        await Promise.all([
          page.waitForNavigation(),
          row.locator("form[action='/admin/pending/register'] button[type=submit]").click(),
        ]);
        assert.match(await flash(page), /Registered/);
        const done = await login.done;
        assert.ok(
          done.success,
          `tailscale up failed after approval:\n${done.stderr}${done.stdout}`,
        );
        await client.waitForBackendState("Running");
        const node = await server.nodeByHostname("ui-bravo");
        assert.equal(node.user?.name, "alice");
        await machines.locator(`#machines tr[data-node-id="${node.id}"] td[data-online="true"]`)
          .waitFor({ timeout: 20_000 });
        // The summary line follows the live rows: two machines, both online, still no reload.
        assert.equal(await machines.locator("[data-count=rows]").innerText(), "2");
        assert.equal(await machines.locator("[data-count=online]").innerText(), "2");
        await browser.screenshot(machines, "machines-two");
      });

      await step("a bad policy is refused at its line and the old policy stays", async () => {
        await visit(page, server, "/policy");
        // A valid draft: checked as typed, its preview shown, then saved.
        await page.fill("#policy-text", GOOD_POLICY);
        await waitForText(page, "#policy-result", "Who gains and who loses access");
        await submit(page, "#policy-form button.primary");
        assert.match(await flash(page), /Policy saved/);
        const saved = await server.cli<{ policy: string }>(["policy", "get"]);
        assert.equal(saved.policy, GOOD_POLICY);

        // A draft naming an undefined group: the problem at line 5, as typed and on saving.
        await page.fill("#policy-text", BAD_POLICY);
        const problem = page.locator("#policy-result .policy-problems li").filter({
          hasText: "group:eng",
        });
        await problem.waitFor();
        assert.match(await problem.locator("button[data-line]").innerText(), /^Line 5\b/);
        await browser.screenshot(page, "policy-invalid");
        const [response] = await Promise.all([
          page.waitForResponse((r) => r.url().endsWith("/admin/policy/save")),
          page.click("#policy-form button.primary"),
        ]);
        assert.equal(response.status(), 422);
        await page.waitForLoadState();
        assert.equal(
          await page.locator(".policy-problems button[data-line]").first().getAttribute(
            "data-line",
          ),
          "5",
        );
        assert.equal((await page.inputValue("#policy-text")).trim(), BAD_POLICY.trim());
        await browser.screenshot(page, "policy-refused");
        // The refused page's 422 shows in the console: expected, and nothing else.
        const refused = browser.takeProblems();
        assert.ok(
          refused.every((p) => /status of 422 .*\/admin\/policy\/save/.test(p.text)),
          JSON.stringify(refused),
        );
        const after = await server.cli<{ policy: string }>(["policy", "get"]);
        assert.equal(after.policy, GOOD_POLICY, "the policy changed after a refused save");
      });

      await step(
        "a forged POST without the CSRF token is refused (403) and changes nothing",
        async () => {
          // From the page itself (same origin, the session cookie goes along): no token.
          const fromPage = await page.evaluate(async () => {
            const r = await fetch("/admin/users/create", {
              method: "POST",
              body: new URLSearchParams({ name: "mallory" }),
            });
            return { status: r.status, text: await r.text() };
          });
          assert.equal(fromPage.status, 403);
          assert.match(fromPage.text, /CSRF/);
          // With a wrong token.
          const wrong = await page.evaluate(async () => {
            const r = await fetch("/admin/users/create", {
              method: "POST",
              body: new URLSearchParams({ name: "mallory", csrf: "0".repeat(64) }),
            });
            return r.status;
          });
          assert.equal(wrong, 403);
          // Outside a browser, with the session cookie and no token.
          const cookie = (await browser.context.cookies()).find((c) => c.name === SESSION_COOKIE);
          assert.ok(cookie);
          const plain = await fetch(`${server.url}/admin/users/create`, {
            method: "POST",
            headers: {
              cookie: `${cookie.name}=${cookie.value}`,
              "content-type": "application/x-www-form-urlencoded",
            },
            body: "name=mallory",
          });
          assert.equal(plain.status, 403);
          await plain.body?.cancel();
          const users = await server.cli<{ name: string }[]>(["users", "list"]);
          assert.deepEqual(users.map((u) => u.name), ["alice"]);
          // The browser logs the two refusals (403) in the console: expected.
          const refused = browser.takeProblems();
          assert.ok(refused.every((p) => /status of 403/.test(p.text)), JSON.stringify(refused));
        },
      );

      await step("every page, desktop and phone: no console error, no CSP violation", async () => {
        await visit(page, server, "/machines");
        const nav = await page.locator("nav.main a").evaluateAll((links) =>
          links.map((a) => new URL((a as unknown as { href: string }).href).pathname)
        );
        for (const expected of ["machines", "users", "keys", "pending", "policy", "health"]) {
          assert.ok(nav.includes(`/admin/${expected}`), `no ${expected} in the nav: ${nav}`);
        }
        for (const path of nav) {
          await visit(page, server, path.slice("/admin".length));
          await browser.screenshot(page, `page-${path.slice("/admin/".length)}`);
        }
        const node = await server.nodeByHostname("ui-alpha");
        await visit(page, server, `/machines/node?id=${node.id}`);
        await browser.screenshot(page, "page-machine");

        const phone = await browser.newPage({ viewport: { width: 390, height: 844 } });
        for (const path of ["/machines", "/policy"]) {
          await visit(phone, server, path);
          await browser.screenshot(phone, `phone-${path.slice(1)}`);
          const overflow = await phone.evaluate(() => {
            const d = (globalThis as unknown as {
              document: { documentElement: { scrollWidth: number; clientWidth: number } };
            }).document.documentElement;
            return d.scrollWidth - d.clientWidth;
          });
          assert.ok(overflow <= 0, `${path} is ${overflow}px wider than a phone`);
        }
        assert.deepEqual(browser.consoleProblems, [], browser.describeProblems());
        assert.deepEqual([...browser.requestedOrigins], [server.url]);
      });
    }),
});
