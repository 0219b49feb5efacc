/**
 * Tailscale SSH `check` rules approved through the OpenID provider: the check page offers the
 * login; only the owner of the node the connection comes from can approve it (as headscale).
 */
import assert from "node:assert/strict";
import { createServer } from "node:http";
import { AuthRequestRegistry } from "../lib/auth_requests/registry.ts";
import { SshChecks } from "../lib/control/ssh_check.ts";
import { createAuthPageHandler } from "../lib/control/register_page.ts";
import { parseConfigText } from "../lib/config/load.ts";
import { silentLogger } from "../lib/log/log.ts";
import { OidcClient } from "../lib/oidc/client.ts";
import { OidcWeb } from "../lib/oidc/web.ts";
import type { NodeRecord, UserRecord } from "../lib/store/types.ts";
import { startOidcProvider } from "./helpers/oidc_provider.ts";

const DST_KEY = "mkey:" + "d".repeat(64);

Deno.test("oidc ssh check: the source node's owner approves by logging in; others cannot", async () => {
  const idp = await startOidcProvider({ clientId: "hs", clientSecret: "s" });
  idp.users.set("alice", { sub: "a", email: "alice@example.com", email_verified: true });
  idp.users.set("bob", { sub: "b", email: "bob@example.com", email_verified: true });
  const requests = new AuthRequestRegistry();
  const nodes = new Map<number, NodeRecord>([
    [1, { id: 1, userId: 10, tags: [], machineKey: "mkey:src" } as unknown as NodeRecord],
    [2, { id: 2, userId: 11, tags: [], machineKey: DST_KEY } as unknown as NodeRecord],
  ]);
  const checks = new SshChecks({
    requests,
    getNode: (id) => nodes.get(id),
    checkPeriodMs: () => 0,
    serverUrl: "http://127.0.0.1",
    log: silentLogger(),
  });
  // Set once the pages exist (their server_url needs this listener's port).
  // deno-lint-ignore prefer-const
  let handler: ((req: unknown, res: unknown) => void) | undefined;
  const http = createServer((req, res) => handler!(req, res));
  await new Promise<void>((r) => http.listen(0, "127.0.0.1", r));
  const web = `http://127.0.0.1:${(http.address() as { port: number }).port}`;
  const { config } = parseConfigText(
    `server_url: ${web}\noidc:\n  issuer: ${idp.issuer}\n  client_id: hs\n  client_secret: s\n`,
    { env: {} },
  );
  const client = new OidcClient({
    config: config.oidc!,
    clientSecret: "s",
    redirectUri: `${web}/oidc/callback`,
  });
  const userIds: Record<string, number> = { a: 10, b: 11 };
  const oidc = new OidcWeb({
    client,
    config: config.oidc!,
    serverUrl: web,
    log: silentLogger(),
    upsertUser: (c) => Promise.resolve({ id: userIds[c.sub], name: c.sub } as UserRecord),
    isPending: (purpose, id) => purpose === "ssh-check" && checks.has(id),
    register: () => Promise.reject(new Error("not a login")),
    sshCheckSource: (id) => checks.sourceOf(id),
    getNode: (id) => nodes.get(id),
    approveSshCheck: async (id) => void await requests.approve(id),
  });
  const authPage = createAuthPageHandler(checks, oidc);
  handler = (req, res) => {
    const r = req as Parameters<typeof authPage>[0];
    const s = res as Parameters<typeof authPage>[1];
    if ((r.url ?? "").startsWith("/oidc/callback")) oidc.callback(r, s);
    else authPage(r, s);
  };
  const loginAs = async (id: string, username: string) => {
    const start = await fetch(`${web}/auth/${id}/oidc`, { redirect: "manual" });
    await start.body?.cancel();
    assert.equal(start.status, 302);
    const cookie = (start.headers.get("set-cookie") ?? "").split(";")[0];
    const back = await idp.login(start.headers.get("location")!, username);
    const r = await fetch(back, { headers: { cookie } });
    return { status: r.status, html: await r.text() };
  };
  try {
    const hold = await checks.action(1, 2, null, DST_KEY);
    const id = new URL(hold.holdAndDelegate!.replace(/\$/g, "")).searchParams.get("auth_id")!;
    const page = await (await fetch(`${web}/auth/${id}`)).text();
    assert.ok(page.includes(`href="/auth/${id}/oidc"`), page);
    assert.ok(page.includes(`auth approve --auth-id ${id}`), "the admin's way stays");
    const followUp = checks.action(1, 2, id, DST_KEY);
    // bob owns the destination, not the source: refused, the check still waits.
    const bob = await loginAs(id, "bob");
    assert.equal(bob.status, 403);
    assert.match(bob.html, /not the owner of the machine this SSH connection comes from/);
    assert.ok(checks.has(id));
    // alice owns the source node: approved.
    const alice = await loginAs(id, "alice");
    assert.equal(alice.status, 200, alice.html);
    assert.match(alice.html, /SSH session authorized/);
    assert.equal((await followUp).accept, true);
    // A decided check offers nothing more.
    const gone = await fetch(`${web}/auth/${id}/oidc`, { redirect: "manual" });
    await gone.body?.cancel();
    assert.equal(gone.status, 404);
  } finally {
    requests.close();
    http.closeAllConnections();
    await new Promise((r) => http.close(r));
    await idp.close();
  }
});
