/**
 * `deno task bench-scale` end to end at a small size: the Go generator builds, its simulated nodes
 * register over the real protocol, converge, see every endpoint change, come back after a server
 * restart without registering again, and end with exactly their expected peers, with no policy
 * and with the realistic one (each node sees a subset). Figures are not asserted, only outcomes.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("..", import.meta.url));

async function skipReason(): Promise<string | undefined> {
  if (Deno.build.os !== "linux") return "bench-scale reads /proc and pins with taskset (Linux)";
  if (navigator.hardwareConcurrency < 2) {
    return "bench-scale pins server and generator to two cores";
  }
  for (const tool of ["go", "taskset"]) {
    const found = await new Deno.Command("sh", {
      args: ["-c", `command -v ${tool}`],
      stdout: "null",
    })
      .output().then((o) => o.success, () => false);
    if (!found) return `bench-scale needs ${tool}`;
  }
  return undefined;
}

const skip = await skipReason();
if (skip) console.log(`bench-scale test skipped: ${skip}`);

interface Dist {
  count: number;
  p50_ms: number;
  max_ms: number;
}

interface Result {
  nodes: number;
  registered: number;
  converged_s: number;
  converged_nodes: number;
  expected_peers: Dist;
  lone_change_delay: Dist;
  lone_changes_undelivered: number;
  churn: { changes: number; delivered: number; receipts: number; receipts_expected: number };
  restart?: { reconverged_s: number; reconverged_nodes: number; findings?: string[] };
  correct: boolean;
  correct_nodes: number;
  correctness_issues?: string[];
}

/** Runs the task into a fresh directory and returns its result.json. */
async function benchScale(args: string[], env: Record<string, string> = {}): Promise<Result> {
  const parent = await Deno.makeTempDir({ prefix: "bench-scale-test-" });
  try {
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "--allow-all", join(root, "scripts", "bench_scale.ts"), ...args],
      cwd: root,
      env: { ...env, BENCH_SCALE_DIR: parent },
      stdout: "piped",
      stderr: "piped",
    }).output();
    const stdout = new TextDecoder().decode(out.stdout);
    const stderr = new TextDecoder().decode(out.stderr);
    const path = stdout.match(/^result: (.+)$/m)?.[1];
    assert.ok(path, `no result path (exit ${out.code}):\n${stdout}\n${stderr.slice(-3000)}`);
    const result = JSON.parse(await Deno.readTextFile(path)) as Result;
    assert.equal(out.code, 0, `bench-scale failed:\n${stdout}\n${stderr.slice(-3000)}`);
    return result;
  } finally {
    await Deno.remove(parent, { recursive: true });
  }
}

function assertHealthy(r: Result, n: number) {
  assert.equal(r.nodes, n);
  assert.equal(r.registered, n);
  assert.equal(r.converged_nodes, n);
  assert.ok(r.converged_s >= 0, "every node saw its expected peers online");
  assert.ok(r.lone_change_delay.count > 0);
  assert.equal(r.lone_changes_undelivered, 0);
  assert.ok(r.churn.changes > 0, "churn made changes");
  assert.equal(r.churn.delivered, r.churn.changes, "every change reached every node that sees it");
  assert.equal(r.churn.receipts, r.churn.receipts_expected);
  assert.ok(r.correct, (r.correctness_issues ?? []).join("\n"));
  assert.equal(r.correct_nodes, n);
}

Deno.test({
  name: "bench-scale: 20 nodes, no policy, churn and a restart storm through a 3-slot set-up gate",
  ignore: skip !== undefined,
  sanitizeResources: false,
  async fn() {
    // A gate smaller than the tailnet, so connections wait their turn paused (and must resume).
    const r = await benchScale(
      ["20", "--churn", "3s", "--idle", "1s", "--lone", "3", "--restart"],
      { HEADSCALE_TUNING_MAX_CONNECTING_NODES: "3" },
    );
    assertHealthy(r, 20);
    assert.equal(r.expected_peers.max_ms, 19, "everyone sees everyone");
    assert.ok(r.restart, "restart phase ran");
    assert.equal(r.restart.reconverged_nodes, 20, (r.restart.findings ?? []).join("\n"));
    assert.ok(r.restart.reconverged_s >= 0);
  },
});

Deno.test({
  name: "bench-scale: 40 nodes under the realistic policy see exactly their subsets",
  ignore: skip !== undefined,
  sanitizeResources: false,
  async fn() {
    const r = await benchScale([
      "40",
      "--policy",
      "realistic",
      "--users",
      "10",
      "--churn",
      "3s",
      "--idle",
      "1s",
      "--lone",
      "3",
    ]);
    assertHealthy(r, 40);
    assert.ok(r.expected_peers.p50_ms < 39, "a node sees a subset of the tailnet");
  },
});

Deno.test({
  name:
    "bench-scale: the generator's own Go tests (its HTTP/2 client against Go's server, the map scanner)",
  ignore: skip !== undefined,
  sanitizeResources: false,
  async fn() {
    const out = await new Deno.Command("go", {
      args: ["test", "-count=1", "."],
      cwd: join(root, "scripts", "bench_scale"),
      env: { GOFLAGS: "-mod=mod", GOTOOLCHAIN: Deno.env.get("TS_GOTOOLCHAIN") ?? "auto" },
      stdout: "piped",
      stderr: "piped",
    }).output();
    const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
    assert.equal(out.code, 0, `go test failed:\n${text.slice(-4000)}`);
  },
});
