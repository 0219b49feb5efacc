/**
 * DERP relay throughput: our server (main.ts, embedded DERP) against Tailscale's own `derper` at
 * the pinned client version, in the same run, on loopback, with the same load generator (our
 * lib/derp/client.ts) and the same packet sizes.
 *
 *   deno run -A scripts/bench/derp_vs_derper.ts [--seconds=2] [--rounds=2] [--sizes=100,1200,16384]
 *                                              [--window=24] [--pairs=1] [--modes=plain,tls]
 *                                              [--derper=/path/to/derper]
 *
 * Each case relays packets from sender to receiver of `pairs` client pairs for `seconds`, closed
 * loop: at most `window` packets of a pair are in flight (derper queues only 32 packets per
 * receiver and drops beyond that, so an open-loop blast would measure its drop policy rather than
 * its forwarding). Packets lost anyway are counted and the window refilled. Cases alternate
 * between the two relays, `rounds` times; the figures are means over rounds. Besides packets/s
 * and MB/s it prints the relay process's CPU time per relayed packet, read from /proc, which is
 * fairer than the rates on a small machine where the load generator shares the cores.
 *
 * `derper` is built with `scripts/install_tailscale.sh derper` (go install at the pinned
 * version) unless --derper is given. Both relays listen on 127.0.0.1 only, verify no clients,
 * and run without STUN; `tls` mode puts both behind TLS (ours: a throwaway CA's certificate;
 * derper: its self-signed IP certificate); the generator skips verification in both.
 */
import { fileURLToPath } from "node:url";
import { DerpClient } from "../../lib/derp/client.ts";
import { createTestCa, issueServerCertificate } from "../../integration/support/tls.ts";
import { freeTcpPort, serverConfigYaml } from "../../integration/support/server_config.ts";

const REPO_ROOT = fileURLToPath(new URL("../../", import.meta.url));

interface Options {
  seconds: number;
  rounds: number;
  sizes: number[];
  window: number;
  pairs: number;
  modes: ("plain" | "tls")[];
  derper?: string;
}

function parseArgs(args: string[]): Options {
  const opts: Options = {
    seconds: 2,
    rounds: 2,
    sizes: [100, 1200, 16384],
    window: 24,
    pairs: 1,
    modes: ["plain", "tls"],
  };
  for (const arg of args) {
    const m = /^--([a-z]+)=(.+)$/.exec(arg);
    if (!m) throw new Error(`unknown argument ${arg}`);
    const [, key, value] = m;
    const num = (max: number) => {
      const n = Number(value);
      if (!Number.isFinite(n) || n <= 0 || n > max) throw new Error(`--${key}: 0 < n <= ${max}`);
      return n;
    };
    switch (key) {
      case "seconds":
        opts.seconds = num(60);
        break;
      case "rounds":
        opts.rounds = Math.floor(num(10));
        break;
      case "window":
        opts.window = Math.floor(num(32));
        break;
      case "pairs":
        opts.pairs = Math.floor(num(16));
        break;
      case "sizes":
        opts.sizes = value.split(",").map((s) => {
          const n = Number(s);
          if (!Number.isInteger(n) || n < 1 || n > 65536) throw new Error(`bad size ${s}`);
          return n;
        });
        break;
      case "modes":
        opts.modes = value.split(",").map((s) => {
          if (s !== "plain" && s !== "tls") throw new Error(`bad mode ${s}`);
          return s;
        });
        break;
      case "derper":
        opts.derper = value;
        break;
      default:
        throw new Error(`unknown option --${key}`);
    }
  }
  return opts;
}

/** user+system CPU seconds of a process so far (Linux /proc). */
async function cpuSeconds(pid: number): Promise<number> {
  const stat = await Deno.readTextFile(`/proc/${pid}/stat`);
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  // Fields 14 and 15 of stat(5) (utime, stime), counted from the state field (3).
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

interface Relay {
  name: string;
  /** DERP URL for the generator. */
  url: string;
  pid: number;
  stop(): Promise<void>;
}

/** Waits until the relay accepts a DERP connection (and its handshake). */
async function waitReady(url: string, process: Deno.ChildProcess, logPath: string) {
  const deadline = Date.now() + 60_000;
  let exited = false;
  process.status.then(() => exited = true);
  for (;;) {
    try {
      const c = await DerpClient.connect({ url, insecure: true, timeoutMs: 2_000 });
      await c.close();
      return;
    } catch (error) {
      if (exited || Date.now() > deadline) {
        throw new Error(
          `${url} not ready (${(error as Error).message}); log:\n${await Deno.readTextFile(
            logPath,
          )}`,
        );
      }
      await new Promise((r) => setTimeout(r, 200));
    }
  }
}

async function spawn(argv: string[], logPath: string, cwd: string): Promise<Deno.ChildProcess> {
  const log = await Deno.open(logPath, { create: true, write: true, truncate: true });
  const child = new Deno.Command(argv[0], {
    args: argv.slice(1),
    cwd,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const sink = (stream: ReadableStream<Uint8Array>) =>
    stream.pipeTo(
      new WritableStream({ write: (chunk) => void log.writeSync(chunk) }),
    ).catch(() => {});
  Promise.all([sink(child.stdout), sink(child.stderr)]).finally(() => log.close());
  return child;
}

function stopper(child: Deno.ChildProcess, dir: string): () => Promise<void> {
  return async () => {
    try {
      child.kill("SIGTERM");
    } catch { /* gone */ }
    const timer = setTimeout(() => {
      try {
        child.kill("SIGKILL");
      } catch { /* gone */ }
    }, 5_000);
    await child.status;
    clearTimeout(timer);
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  };
}

async function startOurs(tls: boolean): Promise<Relay> {
  const dir = await Deno.makeTempDir({ prefix: "hsd-bench-derp-" });
  const port = freeTcpPort();
  const scheme = tls ? "https" : "http";
  let tlsFiles: { certPath: string; keyPath: string } | undefined;
  if (tls) {
    const ca = await createTestCa(`${dir}/tls`);
    tlsFiles = await issueServerCertificate(ca, { ipAddresses: ["127.0.0.1"] });
  }
  await Deno.writeTextFile(
    `${dir}/config.yaml`,
    serverConfigYaml({
      dir,
      serverUrl: `${scheme}://127.0.0.1:${port}`,
      listenAddr: `127.0.0.1:${port}`,
      tls: tlsFiles && { certPath: tlsFiles.certPath, keyPath: tlsFiles.keyPath },
      derp: { verifyClients: false, stunListenAddr: null },
      logLevel: "warn",
    }),
  );
  const logPath = `${dir}/server.log`;
  const child = await spawn(
    [
      Deno.execPath(),
      "run",
      "--allow-net",
      "--allow-read",
      "--allow-write",
      "--allow-env",
      "--allow-sys",
      `${REPO_ROOT}main.ts`,
      "-c",
      `${dir}/config.yaml`,
    ],
    logPath,
    dir,
  );
  const url = `${scheme}://127.0.0.1:${port}/derp`;
  await waitReady(url, child, logPath);
  return { name: "ours", url, pid: child.pid, stop: stopper(child, dir) };
}

async function startDerper(binary: string, tls: boolean): Promise<Relay> {
  const dir = await Deno.makeTempDir({ prefix: "hsd-bench-derper-" });
  const port = freeTcpPort();
  const logPath = `${dir}/derper.log`;
  const argv = [
    binary,
    `-a=127.0.0.1:${port}`,
    "-stun=false",
    `-c=${dir}/derper.key`,
    "-http-port=-1",
    ...(tls ? ["-certmode=manual", `-certdir=${dir}/certs`, "-hostname=127.0.0.1"] : []),
  ];
  const child = await spawn(argv, logPath, dir);
  const url = `${tls ? "https" : "http"}://127.0.0.1:${port}/derp`;
  await waitReady(url, child, logPath);
  return { name: "derper", url, pid: child.pid, stop: stopper(child, dir) };
}

async function derperBinary(opts: Options): Promise<string> {
  if (opts.derper) return opts.derper;
  const out = await new Deno.Command("bash", {
    args: [`${REPO_ROOT}scripts/install_tailscale.sh`, "derper"],
    stderr: "inherit",
  }).output();
  const line = new TextDecoder().decode(out.stdout).trim().split("\n").at(-1) ?? "";
  const m = /^(v\S+) (.+)$/.exec(line);
  if (!out.success || !m) throw new Error(`install_tailscale.sh derper failed: ${line}`);
  return `${m[2]}/derper`;
}

interface CaseResult {
  packets: number;
  bytes: number;
  lost: number;
  seconds: number;
  relayCpu: number;
}

interface PairState {
  sent: number;
  received: number;
  /** Packets written off as dropped. */
  lost: number;
  /** `received` at the watchdog's last look. */
  lastSeen: number;
  /** Sends until `window` packets are in flight. */
  topUp: () => void;
}

/** One measured case: `pairs` sender→receiver pairs relaying `size`-byte packets. */
async function runCase(
  relay: Relay,
  size: number,
  seconds: number,
  opts: Options,
): Promise<CaseResult> {
  const insecure = relay.url.startsWith("https:");
  const pairs: PairState[] = [];
  const clients: DerpClient[] = [];
  let running = false;
  let bytes = 0;
  const payload = new Uint8Array(size).fill(0xa5);
  try {
    for (let p = 0; p < opts.pairs; p++) {
      const receiver = await DerpClient.connect({
        url: relay.url,
        insecure,
        onPacket: (_src, data) => {
          state.received++;
          if (running) {
            bytes += data.length;
            state.topUp();
          }
        },
      });
      const sender = await DerpClient.connect({ url: relay.url, insecure });
      clients.push(receiver, sender);
      const state: PairState = {
        sent: 0,
        received: 0,
        lost: 0,
        lastSeen: 0,
        topUp: () => {
          while (running && state.sent - state.received - state.lost < opts.window) {
            sender.send(receiver.publicKey, payload);
            state.sent++;
          }
        },
      };
      pairs.push(state);
      // Both ends registered: a packet gets through before the clock starts.
      await waitFor(async () => {
        sender.send(receiver.publicKey, payload);
        state.sent++;
        await new Promise((r) => setTimeout(r, 20));
        return state.received > 0;
      }, 5_000);
    }
    // Let the probe packets land, then count from here.
    await new Promise((r) => setTimeout(r, 100));
    for (const st of pairs) {
      st.lost = st.sent - st.received;
      st.lastSeen = st.received;
    }
    const base = pairs.map((st) => ({ received: st.received, lost: st.lost }));
    const cpu0 = await cpuSeconds(relay.pid);
    const t0 = performance.now();
    running = true;
    for (const st of pairs) st.topUp();
    // A window stuck on dropped packets is written off and refilled.
    const watchdog = setInterval(() => {
      for (const st of pairs) {
        if (st.received === st.lastSeen && st.sent - st.received - st.lost > 0) {
          st.lost = st.sent - st.received;
          st.topUp();
        }
        st.lastSeen = st.received;
      }
    }, 100);
    await new Promise((r) => setTimeout(r, seconds * 1000));
    running = false;
    const elapsed = (performance.now() - t0) / 1000;
    clearInterval(watchdog);
    const cpu1 = await cpuSeconds(relay.pid);
    const packets = pairs.reduce((sum, st, i) => sum + st.received - base[i].received, 0);
    const lost = pairs.reduce((sum, st, i) => sum + st.lost - base[i].lost, 0);
    return { packets, bytes, lost, seconds: elapsed, relayCpu: cpu1 - cpu0 };
  } finally {
    running = false;
    await Promise.all(clients.map((c) => c.close().catch(() => {})));
  }
}

async function waitFor(f: () => Promise<boolean>, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await f())) {
    if (Date.now() > deadline) throw new Error("no packet got through the relay");
  }
}

function fmt(n: number, digits = 0): string {
  return n.toLocaleString("en-US", {
    maximumFractionDigits: digits,
    minimumFractionDigits: digits,
  });
}

async function main() {
  const opts = parseArgs(Deno.args);
  const derper = await derperBinary(opts);
  const version = new TextDecoder().decode(
    (await new Deno.Command(derper, { args: ["-version"] }).output()).stdout,
  ).trim();
  console.log(
    `DERP relay benchmark: ours (main.ts, Deno ${Deno.version.deno}) vs derper ${version}; ` +
      `${opts.seconds} s per case, ${opts.rounds} rounds, window ${opts.window}, ` +
      `${opts.pairs} pair(s), ${navigator.hardwareConcurrency} CPUs`,
  );
  const rows: string[][] = [[
    "mode",
    "size",
    "ours pkt/s",
    "derper pkt/s",
    "ours MB/s",
    "derper MB/s",
    "ratio",
    "ours µs CPU/pkt",
    "derper µs CPU/pkt",
    "lost (ours/derper)",
  ]];
  for (const mode of opts.modes) {
    const tls = mode === "tls";
    const relays = [await startOurs(tls), await startDerper(derper, tls)];
    try {
      // Warm-up (JIT, connection setup paths) on both, not counted.
      for (const r of relays) await runCase(r, 1200, 0.5, opts);
      for (const size of opts.sizes) {
        const sums = new Map<string, CaseResult>();
        for (let round = 0; round < opts.rounds; round++) {
          for (const r of round % 2 === 0 ? relays : [...relays].reverse()) {
            const res = await runCase(r, size, opts.seconds, opts);
            const s = sums.get(r.name) ??
              { packets: 0, bytes: 0, lost: 0, seconds: 0, relayCpu: 0 };
            s.packets += res.packets;
            s.bytes += res.bytes;
            s.lost += res.lost;
            s.seconds += res.seconds;
            s.relayCpu += res.relayCpu;
            sums.set(r.name, s);
          }
        }
        const ours = sums.get("ours")!;
        const theirs = sums.get("derper")!;
        const pps = (r: CaseResult) => r.packets / r.seconds;
        const mbps = (r: CaseResult) => r.bytes / r.seconds / 1e6;
        const cpuPerPkt = (r: CaseResult) => r.packets ? (r.relayCpu / r.packets) * 1e6 : 0;
        rows.push([
          mode,
          `${fmt(size)} B`,
          fmt(pps(ours)),
          fmt(pps(theirs)),
          fmt(mbps(ours), 1),
          fmt(mbps(theirs), 1),
          fmt(pps(ours) / pps(theirs), 2),
          fmt(cpuPerPkt(ours), 1),
          fmt(cpuPerPkt(theirs), 1),
          `${fmt(ours.lost)}/${fmt(theirs.lost)}`,
        ]);
        console.log(rows.at(-1)!.join("  "));
      }
    } finally {
      await Promise.all(relays.map((r) => r.stop()));
    }
  }
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  console.log(
    "\n" + rows.map((r) => "| " + r.map((c, i) => c.padEnd(widths[i])).join(" | ") + " |")
      .join("\n"),
  );
  console.log("\nratio = ours pkt/s ÷ derper pkt/s (higher is better for ours)");
}

if (import.meta.main) await main();
