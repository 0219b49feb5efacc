/**
 * The shipped systemd unit: hardened as a distribution would ship it, and accepted by
 * `systemd-analyze verify` where systemd is installed (skipped with a message otherwise).
 */
import assert from "node:assert/strict";

const UNIT = new URL("../scripts/systemd/headscale-deno.service", import.meta.url);

function directives(text: string): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const line of text.split("\n")) {
    const m = /^([A-Za-z]+)=(.*)$/.exec(line.trim());
    if (m) out.set(m[1], [...out.get(m[1]) ?? [], m[2]]);
  }
  return out;
}

Deno.test("systemd unit: own user, state/config directories, hardening, restart", () => {
  const d = directives(Deno.readTextFileSync(UNIT));
  const one = (k: string) => d.get(k)?.at(-1);
  assert.equal(one("User"), "headscale");
  assert.equal(one("StateDirectory"), "headscale");
  assert.equal(one("ConfigurationDirectory"), "headscale");
  assert.equal(one("NoNewPrivileges"), "yes");
  assert.equal(one("ProtectSystem"), "strict");
  assert.equal(one("CapabilityBoundingSet"), "CAP_NET_BIND_SERVICE");
  assert.equal(one("AmbientCapabilities"), "CAP_NET_BIND_SERVICE");
  assert.equal(one("Restart"), "on-failure");
  assert.match(one("ExecStart") ?? "", /headscale-deno serve -c \/etc\/headscale\/config\.yaml$/);
  // Deno's JIT needs writable+executable memory: this hardening option would kill it at start.
  assert.equal(d.has("MemoryDenyWriteExecute"), false);
});

Deno.test("systemd unit: systemd-analyze verify", async (t) => {
  let available = true;
  try {
    await new Deno.Command("systemd-analyze", { args: ["--version"], stdout: "null" }).output();
  } catch {
    available = false;
  }
  if (!available) {
    console.log("systemd-analyze is not installed: skipping the unit check");
    return;
  }
  // verify insists that ExecStart's binary exists: point it at a stand-in executable.
  const dir = await Deno.makeTempDir();
  try {
    const bin = `${dir}/headscale-deno`;
    await Deno.writeTextFile(bin, "#!/bin/sh\nexit 0\n", { mode: 0o755 });
    const unit = Deno.readTextFileSync(UNIT).replaceAll("/usr/local/bin/headscale-deno", bin);
    await Deno.writeTextFile(`${dir}/headscale-deno.service`, unit);
    const out = await new Deno.Command("systemd-analyze", {
      args: ["verify", `${dir}/headscale-deno.service`],
      stdout: "piped",
      stderr: "piped",
    }).output();
    const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
    // Without a running systemd (containers) verify still parses the unit; only complaints about
    // the unit itself count.
    const problems = text.split("\n").filter((l) => l.includes("headscale-deno.service"));
    await t.step("no complaints", () => assert.deepEqual(problems, [], text));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
