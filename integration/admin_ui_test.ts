/**
 * The admin web UI in headless Chromium (Debian's package, driven by playwright-core) against our
 * server, with real Tailscale clients: signing in with a one-time link. Screenshots of every
 * step are kept in `.artifacts/ui/admin-ui/` (see integration/support/browser.ts).
 */
import assert from "node:assert/strict";
import { integrationSkipReason, withHarness } from "./harness.ts";
import { type ControlServer, startControlServer } from "./support/control_server.ts";
import { browserSkipReason, launchBrowser, type UiBrowser } from "./support/browser.ts";

const skipReason = (await integrationSkipReason()) ?? (await browserSkipReason());
if (skipReason) console.log(`admin UI browser tests skipped: ${skipReason}`);
const ignore = skipReason !== undefined;

/** `admin signin-link`: a one-time link to `<server_url>/admin/signin/link?token=…`. */
async function signinLink(server: ControlServer): Promise<string> {
  const { url } = await server.cli<{ url?: string }>(["admin", "signin-link"]);
  assert.ok(typeof url === "string" && url.startsWith(`${server.url}/admin/signin/link?`), url);
  return url;
}

/** Opens the link, presses its button, and returns the page the browser lands on signed in. */
async function signIn(browser: UiBrowser, link: string) {
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

Deno.test({
  name: "admin UI: sign in with a one-time link; the link works once",
  ignore,
  fn: () =>
    withHarness({ name: "admin-ui" }, async (h) => {
      const server = await startControlServer(h, { extraConfig: "policy:\n  mode: database" });
      // The session cookie is Secure; the test server speaks plain http on the bridge address.
      const browser = await launchBrowser({ name: "admin-ui", secureOrigins: [server.url] });
      h.onClose(() => browser.close());

      const link = await signinLink(server);
      const page = await signIn(browser, link);
      await browser.screenshot(page, "signed-in");
      const cookies = await browser.context.cookies();
      const session = cookies.find((c) => c.name === "headscale_admin");
      assert.ok(session, `no session cookie: ${JSON.stringify(cookies.map((c) => c.name))}`);
      assert.equal(session.httpOnly, true);
      assert.equal(session.secure, true);
      assert.equal(session.sameSite, "Strict");

      // The same link in another browser (no cookies): refused, and no session for it.
      const other = await browser.newPage({ isolated: true });
      const again = await other.goto(link);
      assert.equal(again?.status(), 400);
      assert.match(await other.locator("[role=alert]").innerText(), /already used|expired/);
      await browser.screenshot(other, "signin-link-used");
      assert.equal(await other.locator("#signin-link").count(), 0);
      // The browser reports the refused page's status (400) in the console: expected here.
      const refused = browser.takeProblems();
      assert.ok(
        refused.every((p) => /status of 400 .*\/admin\/signin\/link\?/.test(p.text)),
        JSON.stringify(refused),
      );

      assert.deepEqual(browser.consoleProblems, [], browser.describeProblems());
      console.log(`admin UI screenshots: ${browser.artifactsDir}`);
    }),
});
