/**
 * The conformance runner's contract: it reads any directory of cases (recursively), prints a
 * line per category and the closing "N passed, N failed", and exits non-zero on a failure
 * that is not on the skip list.
 */

import assert from "node:assert/strict";

const RUNNER = new URL("../scripts/policy_compat.ts", import.meta.url).pathname;

const TOPOLOGY = {
  users: [{ id: 1, name: "alice", email: "alice@example.com" }],
  nodes: {
    laptop: {
      hostname: "laptop",
      tags: [],
      ipv4: "100.64.0.1",
      ipv6: "fd7a:115c:a1e0::1",
      user: "alice",
      routable_ips: [],
      approved_routes: [],
    },
    server: {
      hostname: "server",
      tags: ["tag:server"],
      ipv4: "100.64.0.2",
      ipv6: "fd7a:115c:a1e0::2",
      routable_ips: [],
      approved_routes: [],
    },
  },
};

const POLICY = {
  tagOwners: { "tag:server": ["alice@example.com"] },
  acls: [{ action: "accept", src: ["alice@example.com"], dst: ["tag:server:22"] }],
};

/** What the hosted service would send for POLICY (ranges spelled differently on purpose). */
function captured(serverRule: unknown) {
  const self = {
    allowed_ips: [],
    primary_routes: null,
    tags: null,
    cap_map: { "https://tailscale.com/cap/ssh": null },
  };
  return {
    laptop: { packet_filter_rules: null, ssh_rules: null, self, peers: [{ name: "server" }] },
    server: { packet_filter_rules: [serverRule], ssh_rules: [], self, peers: [{ name: "laptop" }] },
  };
}

const GOOD_RULE = {
  SrcIPs: ["100.64.0.1/32", "fd7a:115c:a1e0::1-fd7a:115c:a1e0::1"],
  DstPorts: [
    { IP: "fd7a:115c:a1e0::2", Ports: { First: 22, Last: 22 } },
    { IP: "100.64.0.2", Ports: { First: 22, Last: 22 } },
  ],
};

async function run(dir: string): Promise<{ code: number; out: string }> {
  const cmd = new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-read", RUNNER, dir],
    stdout: "piped",
    stderr: "piped",
  });
  const { code, stdout, stderr } = await cmd.output();
  return { code, out: new TextDecoder().decode(stdout) + new TextDecoder().decode(stderr) };
}

async function writeCase(dir: string, name: string, c: Record<string, unknown>): Promise<void> {
  await Deno.mkdir(`${dir}/${name.split("/").slice(0, -1).join("/")}`, { recursive: true });
  await Deno.writeTextFile(`${dir}/${name}.json`, JSON.stringify(c));
}

Deno.test("policy-compat runner: passes, failures, categories and exit codes", async () => {
  const dir = await Deno.makeTempDir({ prefix: "policy-compat-" });
  try {
    await writeCase(dir, "acl/acl-good", {
      id: "acl-good",
      category: "acl",
      policy: JSON.stringify(POLICY),
      saas: { status: 200, body: null },
      topology: TOPOLOGY,
      nodes: captured(GOOD_RULE),
    });
    await writeCase(dir, "ssh/deep/ssh-reject", {
      id: "ssh-reject",
      category: "ssh",
      policy: {
        ...POLICY,
        ssh: [{ action: "deny", src: ["*"], dst: ["tag:server"], users: ["root"] }],
      },
      saas: { status: 400, body: { message: '"deny" is not a valid action' } },
      topology: TOPOLOGY,
    });
    let r = await run(dir);
    assert.equal(r.code, 0, r.out);
    assert.match(r.out, /^acl: 1 passed, 0 failed$/m);
    assert.match(r.out, /^ssh: 1 passed, 0 failed$/m);
    assert.match(r.out, /^2 passed, 0 failed$/m);

    // A wrong port in the capture is a failure, and the run exits non-zero.
    await writeCase(dir, "acl/acl-bad", {
      id: "acl-bad",
      category: "acl",
      policy: POLICY,
      saas: { status: 200, body: null },
      topology: TOPOLOGY,
      nodes: captured({
        ...GOOD_RULE,
        DstPorts: [{ IP: "100.64.0.2", Ports: { First: 23, Last: 23 } }],
      }),
    });
    // The service rejected something we accept.
    await writeCase(dir, "grant/grant-lenient", {
      id: "grant-lenient",
      category: "grant",
      policy: POLICY,
      saas: { status: 400, body: { message: "nope" } },
      topology: TOPOLOGY,
    });
    r = await run(dir);
    assert.equal(r.code, 1);
    assert.match(r.out, /^FAIL acl-bad$/m);
    assert.match(r.out, /server: filter/);
    assert.match(r.out, /^FAIL grant-lenient$/m);
    assert.match(r.out, /^acl: 1 passed, 1 failed$/m);
    assert.match(r.out, /^2 passed, 2 failed\n?$/m);
    assert.ok(r.out.trimEnd().endsWith("2 passed, 2 failed"));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("policy-compat runner: every checked-in skip names a reason", async () => {
  const skips = JSON.parse(
    await Deno.readTextFile(new URL("../scripts/policy_compat_skip.json", import.meta.url)),
  );
  for (const [id, reason] of Object.entries(skips)) {
    assert.equal(typeof reason, "string", id);
    assert.ok((reason as string).length > 20, `${id}: give a real reason`);
  }
});
