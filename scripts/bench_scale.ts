/**
 * `deno task bench-scale N [flags]`: the scale benchmark. Builds the load generator
 * (scripts/bench_scale/, Go on tailscale.com's packages) into a cache directory, writes a fresh
 * config (fresh database, 127.0.0.1 ports, embedded DERP + STUN, log level warn) into a temp dir,
 * starts the server pinned to core 1 and the generator pinned to core 0, creates the users and
 * reusable pre-auth keys with the server's own CLI, runs, stops the server, and prints the table
 * and the path of result.json. See docs/scale.md.
 *
 * Flags read here (the rest go to the generator as they are):
 *   --server deno|headscale   this checkout (default) or headscale v0.29.2 (install_headscale_cli.sh)
 *   --db sqlite|postgres      postgres: a throwaway server from scripts/pg_test_server.sh
 *   --policy plain|realistic  realistic: users, groups and tags; each node sees a subset
 *   --users K                 users of the realistic policy
 *   --restart                 restart storm: this wrapper restarts the server when asked
 * Generator flags: --concurrency, --converge-timeout, --idle, --lone, --churn-rate, --churn,
 * --settle, --restart-timeout, --src-ips, --seed (see `bench_scale -h`).
 * Environment: BENCH_SCALE_DIR (parent of the run directories, default: the system temp dir),
 * SERVER_CPU / GEN_CPU (cores, default 1 / 0), PG_PORT (default 5441).
 */
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("..", import.meta.url));
const genSrc = join(root, "scripts", "bench_scale");
// The same permissions as `deno task start` / `deno task cli`, and start's V8 flag (docs/install.md).
const denoFlags = [
  "--allow-net",
  "--allow-read",
  "--allow-write",
  "--allow-env",
  "--allow-sys",
  "--v8-flags=--no-memory-reducer",
];

interface Options {
  n: number;
  server: "deno" | "headscale";
  db: "sqlite" | "postgres";
  policy: "plain" | "realistic";
  users?: number;
  restart: boolean;
  genArgs: string[];
}

function usage(msg: string): never {
  console.error(`bench-scale: ${msg}`);
  console.error(
    "usage: deno task bench-scale N [--server deno|headscale] [--db sqlite|postgres] " +
      "[--policy plain|realistic] [--users K] [--restart] [--concurrency 32] [--churn-rate 10] " +
      "[--churn 30s] [--converge-timeout 10m] [--idle 10s] [--lone 5]",
  );
  Deno.exit(2);
}

function parseOptions(args: string[]): Options {
  const o: Options = {
    n: 0,
    server: "deno",
    db: "sqlite",
    policy: "plain",
    restart: false,
    genArgs: [],
  };
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    const m = a.match(/^--?([a-z-]+)(?:=(.*))?$/);
    if (!m) {
      if (o.n !== 0 || !/^\d+$/.test(a)) usage(`unexpected argument ${a}`);
      o.n = Number(a);
      continue;
    }
    const name = m[1];
    const value = () => m[2] ?? args[++i] ?? usage(`--${name} needs a value`);
    switch (name) {
      case "server": {
        const v = value();
        if (v !== "deno" && v !== "headscale") usage("--server is deno or headscale");
        o.server = v;
        break;
      }
      case "db": {
        const v = value();
        if (v !== "sqlite" && v !== "postgres") usage("--db is sqlite or postgres");
        o.db = v;
        break;
      }
      case "policy": {
        const v = value();
        if (v !== "plain" && v !== "realistic") usage("--policy is plain or realistic");
        o.policy = v;
        break;
      }
      case "users":
        o.users = Number(value());
        if (!Number.isInteger(o.users) || o.users < 1) usage("--users wants a positive number");
        break;
      case "restart":
        o.restart = m[2] === undefined || m[2] === "true";
        break;
      case "help":
      case "h":
        usage("help");
        break;
      default:
        o.genArgs.push(`-${name}`, value());
    }
  }
  if (o.n < 2) usage("N (at least 2 nodes) is required");
  return o;
}

async function run(
  cmd: string[],
  opts: { cwd?: string; env?: Record<string, string>; stderr?: "inherit" } = {},
) {
  const out = await new Deno.Command(cmd[0], {
    args: cmd.slice(1),
    cwd: opts.cwd,
    env: opts.env,
    stdout: "piped",
    stderr: opts.stderr ?? "piped",
  }).output();
  const stdout = new TextDecoder().decode(out.stdout);
  if (!out.success) {
    throw new Error(`${cmd.join(" ")} failed: ${new TextDecoder().decode(out.stderr).trim()}`);
  }
  return stdout;
}

function cacheDir(): string {
  const home = Deno.env.get("HOME") ?? "/tmp";
  return join(
    Deno.env.get("XDG_CACHE_HOME") ?? join(home, ".cache"),
    "headscale-deno",
    "bench_scale",
  );
}

/** Builds the generator (Go's build cache makes a rebuild of unchanged sources quick). */
async function buildGenerator(): Promise<string> {
  const bin = join(cacheDir(), "bench_scale");
  await Deno.mkdir(cacheDir(), { recursive: true });
  await run(["go", "build", "-o", bin, "."], {
    cwd: genSrc,
    env: { GOFLAGS: "-mod=mod", GOTOOLCHAIN: Deno.env.get("TS_GOTOOLCHAIN") ?? "auto" },
  });
  return bin;
}

function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

interface Plan {
  users: string[];
  keys: { owner: string; user: string; tags?: string[] }[];
  policy?: string;
}

function configYaml(dir: string, port: number, ports: number[], db: string, policyPath: string) {
  const [metrics, grpc, stun] = ports;
  return `server_url: http://127.0.0.1:${port}
listen_addr: 127.0.0.1:${port}
metrics_listen_addr: 127.0.0.1:${metrics}
grpc_listen_addr: 127.0.0.1:${grpc}
noise:
  private_key_path: ${dir}/noise_private.key
prefixes:
  v4: 100.64.0.0/10
  v6: fd7a:115c:a1e0::/48
  allocation: sequential
derp:
  server:
    enabled: true
    region_id: 999
    region_code: bench
    region_name: bench-scale embedded DERP
    verify_clients: true
    stun_listen_addr: 127.0.0.1:${stun}
    private_key_path: ${dir}/derp_server_private.key
    automatically_add_embedded_derp_region: true
    ipv4: 127.0.0.1
  urls: []
  paths: []
  auto_update_enabled: false
  update_frequency: 24h
disable_check_updates: true
node:
  expiry: 0
  ephemeral:
    inactivity_timeout: 30m
${db}
log:
  level: warn
  format: text
policy:
  mode: file
  path: "${policyPath}"
dns:
  magic_dns: true
  base_domain: bench.example.com
  override_local_dns: false
  nameservers:
    global: []
    split: {}
  search_domains: []
  extra_records: []
unix_socket: ${dir}/headscale.sock
unix_socket_permission: "0770"
`;
}

async function database(
  o: Options,
  dir: string,
): Promise<{ yaml: string; stop: () => Promise<void> }> {
  if (o.db === "sqlite") {
    return {
      yaml:
        `database:\n  type: sqlite\n  sqlite:\n    path: ${dir}/db.sqlite\n    write_ahead_log: true`,
      stop: async () => {},
    };
  }
  const pgPort = Deno.env.get("PG_PORT") ?? "5441";
  const script = join(root, "scripts", "pg_test_server.sh");
  // A fresh cluster for every run: stop (which removes its data), then start.
  // stderr is passed through: PostgreSQL, started in the background, inherits it and would keep a
  // pipe open forever.
  await run(["bash", script, pgPort, "stop"], { stderr: "inherit" });
  const url = new URL(
    (await run(["bash", script, pgPort], { stderr: "inherit" })).trim().split("\n").at(-1)!,
  );
  return {
    yaml:
      `database:\n  type: postgres\n  postgres:\n    host: ${url.hostname}\n    port: ${url.port}\n` +
      `    name: ${url.pathname.slice(1)}\n    user: ${decodeURIComponent(url.username)}\n` +
      `    pass: ${decodeURIComponent(url.password)}\n    ssl: "false"\n    max_open_conns: 10`,
    stop: async () => {
      await run(["bash", script, pgPort, "stop"], { stderr: "inherit" }).catch(() => {});
    },
  };
}

/** The server process: (re)started with the same command, config and pinning. */
class Server {
  child?: Deno.ChildProcess;
  constructor(
    private cmd: string[],
    private cwd: string,
    private log: string,
    private core: string,
  ) {}

  start(): number {
    // ulimit -n is raised for the server's many connections; the output goes to server.log.
    this.child = new Deno.Command("bash", {
      args: [
        "-c",
        'ulimit -n "$(ulimit -Hn)" 2>/dev/null; log=$1; core=$2; shift 2; exec taskset -c "$core" "$@" >>"$log" 2>&1',
        "bash",
        this.log,
        this.core,
        ...this.cmd,
      ],
      cwd: this.cwd,
      stdin: "null",
    }).spawn();
    return this.child.pid;
  }

  async waitReady(url: string, socket: string): Promise<void> {
    let exited = false;
    this.child!.status.then(() => exited = true);
    for (let i = 0; i < 600; i++) {
      if (exited) {
        const tail = (await Deno.readTextFile(this.log)).split("\n").slice(-20).join("\n");
        throw new Error(`the server exited:\n${tail}`);
      }
      try {
        const r = await fetch(`${url}/key?v=130`);
        await r.body?.cancel();
        if (r.ok && await exists(socket)) return;
      } catch { /* not listening yet */ }
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error("the server did not answer within 60 s");
  }

  /** SIGTERM, SIGKILL after 10 s. */
  async stop(): Promise<void> {
    const child = this.child;
    if (!child) return;
    this.child = undefined;
    try {
      child.kill("SIGTERM");
    } catch { /* already gone */ }
    const timer = setTimeout(() => {
      try {
        child.kill("SIGKILL");
      } catch { /* gone */ }
    }, 10_000);
    await child.status;
    clearTimeout(timer);
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch {
    return false;
  }
}

/** utime+stime of one process, in seconds. */
async function processCPU(pid: number): Promise<number> {
  try {
    const stat = await Deno.readTextFile(`/proc/${pid}/stat`);
    const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return (Number(f[11]) + Number(f[12])) / 100;
  } catch {
    return 0;
  }
}

/** Runs `jobs` with at most `width` at a time. */
async function pool<T>(jobs: (() => Promise<T>)[], width: number): Promise<T[]> {
  const out: T[] = new Array(jobs.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(width, jobs.length) }, async () => {
      while (next < jobs.length) {
        const i = next++;
        out[i] = await jobs[i]();
      }
    }),
  );
  return out;
}

/** Creates the plan's users and keys with the server's CLI; returns {owner: key}. */
async function createKeys(cli: (args: string[]) => Promise<string>, plan: Plan) {
  const ids = await pool(
    plan.users.map((u) => async () => {
      const user = JSON.parse(await cli(["users", "create", u, "-o", "json"]));
      return String(user.id);
    }),
    4,
  );
  const idOf = new Map(plan.users.map((u, i) => [u, ids[i]]));
  const keys = await pool(
    plan.keys.map((k) => async () => {
      const args = [
        "preauthkeys",
        "create",
        "--user",
        idOf.get(k.user)!,
        "--reusable",
        "--expiration",
        "24h",
      ];
      if (k.tags) args.push("--tags", k.tags.join(","));
      const created = JSON.parse(await cli([...args, "-o", "json"]));
      if (typeof created.key !== "string") throw new Error(`no key for ${k.owner}`);
      return created.key as string;
    }),
    4,
  );
  return Object.fromEntries(plan.keys.map((k, i) => [k.owner, keys[i]]));
}

async function pipeLines(
  stream: ReadableStream<Uint8Array>,
  onLine: (line: string) => void | Promise<void>,
): Promise<void> {
  let rest = "";
  for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
    rest += chunk;
    let nl;
    while ((nl = rest.indexOf("\n")) >= 0) {
      await onLine(rest.slice(0, nl));
      rest = rest.slice(nl + 1);
    }
  }
  if (rest) await onLine(rest);
}

async function main() {
  const o = parseOptions(Deno.args);
  const serverCore = Deno.env.get("SERVER_CPU") ?? "1";
  const genCore = Deno.env.get("GEN_CPU") ?? "0";
  console.error("bench-scale: building the generator");
  const gen = await buildGenerator();
  const planArgs = ["-n", String(o.n), "-policy", o.policy];
  if (o.users) planArgs.push("-users", String(o.users));
  const plan: Plan = JSON.parse(await run([gen, "plan", ...planArgs]));

  const parent = Deno.env.get("BENCH_SCALE_DIR") ?? undefined;
  if (parent) await Deno.mkdir(parent, { recursive: true });
  const dir = await Deno.makeTempDir({ dir: parent, prefix: `bench-scale-${o.server}-${o.n}-` });
  let policyPath = "";
  if (plan.policy) {
    policyPath = join(dir, "policy.hujson");
    await Deno.writeTextFile(policyPath, plan.policy);
  }
  const db = await database(o, dir);
  const port = freePort();
  const config = join(dir, "config.yaml");
  await Deno.writeTextFile(
    config,
    configYaml(
      dir,
      port,
      [freePort(), freePort(), freePort()],
      db.yaml,
      policyPath,
    ),
  );
  const url = `http://127.0.0.1:${port}`;

  let serverCmd: string[], cliCmd: string[], version: string;
  if (o.server === "headscale") {
    const hs = (await run(["bash", join(root, "scripts", "install_headscale_cli.sh")])).trim();
    serverCmd = [hs, "serve", "-c", config];
    cliCmd = [hs, "-c", config];
    const pinned = (await Deno.readTextFile(join(root, "scripts", "install_headscale_cli.sh")))
      .match(/^HEADSCALE_VERSION=(\S+)/m)?.[1];
    version = `headscale ${pinned ?? "?"}`;
  } else {
    // The Deno that runs this script (the one ./scripts/deno picked), with `deno task start`'s
    // permissions; no npx in between, so the process tree is the server alone.
    // BENCH_SERVER_FLAGS: extra deno flags for the server only, e.g. "--cpu-prof --cpu-prof-dir=D".
    const extra = (Deno.env.get("BENCH_SERVER_FLAGS") ?? "").split(/\s+/).filter(Boolean);
    serverCmd = [
      Deno.execPath(),
      "run",
      ...denoFlags,
      ...extra,
      join(root, "main.ts"),
      "-c",
      config,
    ];
    cliCmd = [Deno.execPath(), "run", ...denoFlags, join(root, "cli.ts"), "-c", config];
    const commit = (await run(["git", "rev-parse", "--short", "HEAD"], { cwd: root }).catch(() =>
      "?"
    )).trim();
    version = `headscale-deno ${commit}, deno ${Deno.version.deno}`;
  }
  const server = new Server(serverCmd, dir, join(dir, "server.log"), serverCore);
  const socket = join(dir, "headscale.sock");
  let pid = server.start();
  const cleanup = async () => {
    await server.stop();
    await db.stop();
  };
  const onInterrupt = () => {
    cleanup().finally(() => Deno.exit(130));
  };
  Deno.addSignalListener("SIGINT", onInterrupt);
  try {
    await server.waitReady(url, socket);
    const cli = (args: string[]) => run([...cliCmd, ...args], { cwd: dir });
    const keys = await createKeys(cli, plan);
    const authkeys = join(dir, "authkeys.json");
    await Deno.writeTextFile(authkeys, JSON.stringify(keys, null, 2));
    console.error(`bench-scale: ${version}, ${o.n} nodes, ${o.db}, policy ${o.policy}, dir ${dir}`);

    const result = join(dir, "result.json");
    const genArgs = [
      "-server",
      url,
      "-n",
      String(o.n),
      "-authkeys",
      authkeys,
      "-pid",
      String(pid),
      "-server-core",
      serverCore,
      "-out",
      result,
      "-label",
      `${o.server}-${o.db}-${o.n}`,
      ...planArgs.slice(2),
      ...(o.restart ? ["-restart"] : []),
      ...o.genArgs,
    ];
    const child = new Deno.Command("bash", {
      args: [
        "-c",
        'ulimit -n "$(ulimit -Hn)" 2>/dev/null; core=$1; shift; exec taskset -c "$core" "$@"',
        "bash",
        genCore,
        gen,
        ...genArgs,
      ],
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const genLog = await Deno.open(join(dir, "generator.log"), { write: true, create: true });
    const enc = new TextEncoder();
    const answer = child.stdin.getWriter();
    const restartServer = async () => {
      const t0 = performance.now();
      await server.stop();
      pid = server.start();
      await server.waitReady(url, socket);
      const down = (performance.now() - t0) / 1000;
      const startup = await processCPU(pid);
      await Deno.writeTextFile(
        join(dir, "restart.log"),
        `new pid ${pid} ready ${
          down.toFixed(2)
        } s after the stop began; startup CPU ${startup} s\n`,
        { append: true },
      );
      await answer.write(enc.encode(`ready ${pid} ${down.toFixed(3)} ${startup}\n`));
    };
    await Promise.all([
      pipeLines(child.stdout, async (line) => {
        if (line === "@@restart") {
          await restartServer().catch(async (e) => {
            console.error(`bench-scale: restart failed: ${e.message}`);
            await answer.write(enc.encode(`failed\n`));
          });
          return;
        }
        console.log(line);
      }),
      pipeLines(child.stderr, async (line) => {
        console.error(line);
        await genLog.write(enc.encode(line + "\n"));
      }),
    ]);
    const status = await child.status;
    genLog.close();
    await answer.close().catch(() => {});
    await Deno.writeTextFile(join(dir, "version.txt"), version + "\n");
    console.log(`\n${version}\nresult: ${result}`);
    if (!status.success) Deno.exitCode = status.code || 1;
  } finally {
    Deno.removeSignalListener("SIGINT", onInterrupt);
    await cleanup();
  }
}

if (import.meta.main) await main();
