/**
 * Tailscale SSH with real clients: the policy's `ssh` section, compiled into each node's
 * SSHPolicy, decides who gets a shell on a `tailscale up --ssh` node.
 *
 * OpenSSH's `ssh` runs in the source node's namespace and reaches the destination through the
 * source's tailscaled (support/tailscale_ssh.ts); the destination's tailscaled (userspace
 * networking, netstack takes port 22) authenticates the connection by the source's tailnet
 * identity alone. What ran where is proved by the remote command's output: a fresh token, the
 * login user and the destination namespace's own address. (SSH_CONNECTION would name the source,
 * but tailscaled runs a root session through `su -l`, which clears the environment.)
 */
import assert from "node:assert/strict";
import {
  type CommandResult,
  integrationSkipReason,
  runCommand,
  type TailscaleClient,
  waitFor,
  withHarness,
} from "./harness.ts";
import { type ControlServer, startControlServer } from "./support/control_server.ts";
import { ipv4Of } from "./support/tailnet.ts";
import { runSsh, type SshOptions, type SshRun, startSsh } from "./support/tailscale_ssh.ts";
import { browserLogin, browserSshCheck, oidcYaml, withOidcProvider } from "./support/oidc.ts";
import { waitForTunnel } from "./support/reach.ts";

const skipReason = await integrationSkipReason() ??
  (await runCommand(["ssh", "-V"]).then((r) => r.success, () => false)
    ? undefined
    : "the ssh test needs OpenSSH's client: apt-get install -y openssh-client");
if (skipReason) console.log(`ssh tests skipped: ${skipReason}`);
const ignore = skipReason !== undefined;

/** How long a policy change may take to reach the destination's SSHPolicy. */
const CHANGE_TIMEOUT_MS = 20_000;

/** What tailscaled's SSH server says (as an auth banner) when no rule matches the source. */
const DENIED_NODE = /tailscale: tailnet policy does not permit you to SSH to this node/;

/**
 * How `ssh` shows a refusal by `to`'s tailscaled: since v1.86 it sends why as an auth banner
 * (`banner`); older ones refuse the "none" auth without a word, and OpenSSH says only this.
 */
function refusal(to: TailscaleClient, banner: RegExp): RegExp {
  const [major, minor] = to.binaries.version.replace(/^v/, "").split(".").map(Number);
  const explains = major > 1 || (major === 1 && minor >= 86);
  return explains ? banner : /Permission denied \(tailscale\)/;
}

/** Everything may reach everything; ssh as root onto tag:server for `sshSources` only. */
function sshPolicy(sshSources: string[]): string {
  return JSON.stringify(
    {
      tagOwners: { "tag:server": ["alice@"] },
      acls: [{ action: "accept", src: ["*"], dst: ["*:*"] }],
      ssh: [{ action: "accept", src: sshSources, dst: ["tag:server"], users: ["root"] }],
    },
    null,
    2,
  );
}

async function setPolicy(server: ControlServer, dir: string, text: string): Promise<void> {
  const path = `${dir}/policy-${crypto.randomUUID()}.json`;
  await Deno.writeTextFile(path, text);
  await server.cli(["policy", "set", "-f", path]);
}

/** A command whose output shows it ran as root in the destination's namespace. */
function proofCommand(token: string): string {
  return `echo ${token}; id -un; ip -4 -o addr show dev eth0`;
}

/** Asserts `result` is the output of {@link proofCommand} run on `to`. */
function assertRanOn(result: CommandResult, token: string, to: TailscaleClient): void {
  assert.equal(result.code, 0, `ssh exited ${result.code}; stderr:\n${result.stderr}`);
  const [echoed, user, addr] = result.stdout.trimEnd().split("\n");
  assert.equal(echoed, token, `the remote command's output:\n${result.stdout}`);
  assert.equal(user, "root");
  const inet = new RegExp(`inet ${to.address.replaceAll(".", "\\.")}/`);
  assert.match(addr, inet, `ran in ${to.name}'s namespace:\n${result.stdout}`);
}

/** Retries ssh until it succeeds (a policy change is on its way to the destination). */
function waitForSsh(
  from: TailscaleClient,
  ip: string,
  command: string,
  options: SshOptions,
): Promise<CommandResult> {
  return waitFor(
    async () => {
      const result = await runSsh(from, ip, command, { timeoutMs: 15_000, ...options });
      if (!result.success) throw new Error(`ssh exited ${result.code}: ${result.stderr.trim()}`);
      return result;
    },
    CHANGE_TIMEOUT_MS,
    { description: `${from.name}: ssh to ${ip}`, intervalMs: 500 },
  );
}

/** One ssh attempt must be refused by the destination's policy (not lost on the way). */
async function assertRefused(
  from: TailscaleClient,
  to: TailscaleClient,
  options: SshOptions,
  banner: RegExp,
): Promise<void> {
  const ip = await ipv4Of(to);
  const result = await runSsh(from, ip, "echo should-not-run", { timeoutMs: 15_000, ...options });
  assert.equal(result.timedOut, false, "ssh hung");
  assert.equal(result.code, 255, `ssh must fail; stdout: ${result.stdout}`);
  assert.equal(result.stdout, "");
  assert.match(result.stderr, refusal(to, banner));
}

Deno.test({
  name: "ssh: accept rules let exactly the allowed nodes in as root, and follow policy changes",
  ignore,
  fn: () =>
    withHarness({ name: "ssh-accept" }, async (h) => {
      const server = await startControlServer(h, { extraConfig: "policy:\n  mode: database" });
      for (const user of ["alice", "bob"]) await server.createUser(user);
      await setPolicy(server, h.workDir, sshPolicy(["alice@"]));
      const serverKey = await server.createTaggedAuthKey("tag:server");

      const [a, b, c] = await h.addClients(["laptop-a", "server-b", "laptop-c"]);
      await Promise.all([
        a.up({ loginServer: server.url, authKey: await server.createAuthKey("alice") }),
        b.up({ loginServer: server.url, authKey: serverKey, extraArgs: ["--ssh"] }),
        c.up({ loginServer: server.url, authKey: await server.createAuthKey("bob") }),
      ]);
      const bIp = await ipv4Of(b);
      await Promise.all([a, b, c].map((client) => client.waitForPeers(2, 30_000)));
      await Promise.all([waitForTunnel(a, b), waitForTunnel(c, b)]);
      const ssh: SshOptions = { dieWithParent: h.dieWithParent };

      // alice's laptop gets a root shell on the server.
      const token = `ssh-ok-${crypto.randomUUID()}`;
      const fromA = await waitForSsh(a, bIp, proofCommand(token), ssh);
      assertRanOn(fromA, token, b);

      // Only as root: the rule names no other login user.
      await assertRefused(
        a,
        b,
        { ...ssh, user: "nobody" },
        /tailscale: tailnet policy does not permit you to SSH as user "nobody"/,
      );
      // bob's laptop is in no ssh rule (the ACLs let it reach port 22; the SSH policy refuses).
      await assertRefused(c, b, ssh, DENIED_NODE);

      // Every member's devices may now ssh in: bob's laptop gets in, nothing restarted.
      await setPolicy(server, h.workDir, sshPolicy(["autogroup:member"]));
      const token2 = `ssh-ok-${crypto.randomUUID()}`;
      const fromC = await waitForSsh(c, bIp, proofCommand(token2), ssh);
      assertRanOn(fromC, token2, b);

      // And back: bob's session still running on the server is cut ("Access revoked."), and
      // bob's laptop is refused again; alice's still gets in.
      const open = startSsh(c, bIp, "echo started; sleep 60", { ...ssh, timeoutMs: 40_000 });
      let cut: CommandResult;
      try {
        await open.waitForStdout(/^started$/m, 15_000);
        await setPolicy(server, h.workDir, sshPolicy(["alice@"]));
        cut = await open.done;
      } finally {
        open.kill();
      }
      assert.equal(cut.timedOut, false, "the session outlived the policy that allowed it");
      assert.notEqual(cut.code, 0);
      assert.match(cut.stdout + cut.stderr, /Access revoked\./);
      await assertRefused(c, b, ssh, DENIED_NODE);
      assertRanOn(await runSsh(a, bIp, proofCommand(token), ssh), token, b);
    }),
});

/** The banner tailscaled shows while a check rule holds the connection (headscale's text). */
const CHECK_BANNER =
  /# Headscale SSH requires an additional check\.\r?\n# To authenticate, visit: (\S+)\/auth\/(\S+)\r?\n# Authentication checked with Headscale SSH\.\r?\n/;

/**
 * Starts ssh under a check rule and waits for the check's banner; returns the run and the
 * check's auth id. The session must be held: nothing ran yet.
 */
async function startHeldSsh(
  server: ControlServer,
  from: TailscaleClient,
  ip: string,
  command: string,
  options: SshOptions,
): Promise<{ run: SshRun; authId: string }> {
  const run = startSsh(from, ip, command, { timeoutMs: 60_000, ...options });
  try {
    const [, url, authId] = await run.waitForStderr(CHECK_BANNER, 20_000);
    assert.equal(url, server.url, "the check link is on the server's URL");
    assert.equal(run.stdout, "", "the command ran before the check was decided");
    return { run, authId };
  } catch (error) {
    run.kill();
    throw error;
  }
}

Deno.test({
  name: "ssh: a check rule holds the session until `auth approve` (or refuses it on `auth reject`)",
  ignore,
  fn: () =>
    withHarness({ name: "ssh-check" }, async (h) => {
      const server = await startControlServer(h, { extraConfig: "policy:\n  mode: database" });
      await server.createUser("bob");
      const checkPolicy = (period: string) =>
        JSON.stringify({
          tagOwners: { "tag:server": ["bob@"] },
          acls: [{ action: "accept", src: ["*"], dst: ["*:*"] }],
          ssh: [{
            action: "check",
            src: ["bob@"],
            dst: ["tag:server"],
            users: ["root"],
            checkPeriod: period,
          }],
        });
      await setPolicy(server, h.workDir, checkPolicy("1m"));
      const serverKey = await server.createTaggedAuthKey("tag:server");
      const [b, c] = await h.addClients(["server-b", "laptop-c"]);
      await Promise.all([
        b.up({ loginServer: server.url, authKey: serverKey, extraArgs: ["--ssh"] }),
        c.up({ loginServer: server.url, authKey: await server.createAuthKey("bob") }),
      ]);
      const bIp = await ipv4Of(b);
      await waitForTunnel(c, b);
      const ssh: SshOptions = { dieWithParent: h.dieWithParent };
      const runs: SshRun[] = [];
      try {
        // Rejected: the held connection is refused.
        const first = await startHeldSsh(server, c, bIp, "echo should-not-run", ssh);
        runs.push(first.run);
        await server.cli(["auth", "reject", "--auth-id", first.authId]);
        const refused = await first.run.done;
        assert.equal(refused.timedOut, false, "ssh still held after auth reject");
        assert.equal(refused.code, 255, `ssh must fail; stdout: ${refused.stdout}`);
        assert.equal(refused.stdout, "");
        assert.match(refused.stderr, refusal(b, /tailscale: access denied/));

        // Approved: a new check (a new id), and the held session goes ahead.
        const token = `ssh-check-${crypto.randomUUID()}`;
        const second = await startHeldSsh(server, c, bIp, proofCommand(token), ssh);
        runs.push(second.run);
        assert.notEqual(second.authId, first.authId, "each check has its own id");
        // The link in the banner works: its page names the command that approves this check.
        const page = await fetch(`${server.url}/auth/${second.authId}`, {
          signal: AbortSignal.timeout(10_000),
        });
        assert.equal(page.status, 200);
        assert.ok(
          (await page.text()).includes(`auth approve --auth-id ${second.authId}`),
          "the auth page names the approve command",
        );
        await server.cli(["auth", "approve", "--auth-id", second.authId]);
        assertRanOn(await second.run.done, token, b);

        // Within the check period the same pair gets in without a check.
        const again = await runSsh(c, bIp, proofCommand(token), ssh);
        assert.doesNotMatch(again.stderr, /additional check/);
        assertRanOn(again, token, b);

        // A policy change forgets the approval: the next session is held again.
        await setPolicy(server, h.workDir, checkPolicy("2m"));
        const third = await startHeldSsh(server, c, bIp, "echo should-not-run", ssh);
        runs.push(third.run);
        assert.notEqual(third.authId, second.authId);
      } finally {
        for (const run of runs) run.kill();
        await Promise.all(runs.map((run) => run.done));
      }
    }),
});

Deno.test({
  name: "ssh: a check rule is approved by the source node's owner signing in with the provider",
  ignore,
  fn: () =>
    withOidcProvider((idp) =>
      withHarness({ name: "ssh-check-oidc" }, async (h) => {
        const server = await startControlServer(h, {
          extraConfig: "policy:\n  mode: database\n" + oidcYaml(idp),
        });
        const [b, c] = await h.addClients(["server-b", "laptop-c"]);
        // alice's laptop joins through the provider.
        const login = c.startLogin({ loginServer: server.url });
        const page = await browserLogin(idp, await login.authUrl(), "alice");
        assert.equal(page.status, 200, page.html);
        const joined = await login.done;
        assert.ok(joined.success, `tailscale up failed:\n${joined.stderr}`);
        await setPolicy(
          server,
          h.workDir,
          JSON.stringify({
            tagOwners: { "tag:server": ["alice@"] },
            acls: [{ action: "accept", src: ["*"], dst: ["*:*"] }],
            ssh: [{
              action: "check",
              src: ["alice@"],
              dst: ["tag:server"],
              users: ["root"],
              checkPeriod: "1m",
            }],
          }),
        );
        await b.up({
          loginServer: server.url,
          authKey: await server.createTaggedAuthKey("tag:server"),
          extraArgs: ["--ssh"],
        });
        const bIp = await ipv4Of(b);
        await waitForTunnel(c, b);
        const ssh: SshOptions = { dieWithParent: h.dieWithParent };
        const token = `ssh-oidc-${crypto.randomUUID()}`;
        const held = await startHeldSsh(server, c, bIp, proofCommand(token), ssh);
        try {
          // The check page offers the provider.
          const offer = await fetch(`${server.url}/auth/${held.authId}`);
          assert.match(await offer.text(), new RegExp(`/auth/${held.authId}/oidc`));
          // Someone else signing in does not vouch for alice's laptop; the session stays held.
          const eve = await browserSshCheck(idp, server.url, held.authId, "eve");
          assert.equal(eve.status, 403, eve.html);
          assert.match(eve.html, /not the owner of the machine/);
          assert.equal(held.run.stdout, "", "the command ran after a refused sign-in");
          // The laptop's owner signs in: the held session goes ahead.
          const alice = await browserSshCheck(idp, server.url, held.authId, "alice");
          assert.equal(alice.status, 200, alice.html);
          assert.match(alice.html, /SSH session authorized/);
          assertRanOn(await held.run.done, token, b);
        } finally {
          held.run.kill();
          await held.run.done;
        }
      })
    ),
});
