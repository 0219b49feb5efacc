/**
 * One official Tailscale client (tailscaled + the tailscale CLI) living in its own network
 * namespace, in userspace-networking mode, with helpers for what tests do with it.
 */
import type { TailscaleBinaries } from "./binaries.ts";
import {
  CommandError,
  type CommandResult,
  displayCommand,
  ManagedProcess,
  runCommand,
  type RunOptions,
  tailOfFile,
} from "./command.ts";
import type { Namespace } from "./network.ts";
import {
  type NetcheckReport,
  parseNetcheck,
  parseStatus,
  peersOf,
  type TailscaleStatus,
} from "./status.ts";
import { StopWaiting, waitFor } from "./wait.ts";

/** How tailscaled is started. */
export interface DaemonOptions {
  /** `--verbose=N`. */
  verbose?: number;
  /** `TS_DEBUG_MAP`: 1 logs MapRequest/MapResponse JSON, 2 also the streamed updates. */
  debugMap?: 0 | 1 | 2;
  /** Extra environment for tailscaled (added after the harness's defaults, so it can override). */
  env?: Record<string, string>;
  /** Extra tailscaled flags. */
  extraArgs?: string[];
  /** SOCKS5 proxy port on the namespace's 127.0.0.1. Default 1055. */
  socks5Port?: number;
  /** Outbound HTTP proxy port on the namespace's 127.0.0.1. Default 1056. */
  httpProxyPort?: number;
  /** How long to wait for the daemon's socket to answer. Default 30 s. */
  readyTimeoutMs?: number;
  /**
   * Upload logs to this logtail URL (`TS_LOG_TARGET`, flushed at once) instead of running with
   * `--no-logs-no-support`: for tests of what the control server says about log uploads.
   */
  logTarget?: string;
}

export interface UpOptions {
  /** `--login-server`, e.g. `http://172.31.137.1:40123`. */
  loginServer: string;
  /** `--authkey`; never printed (redacted from errors). Without it the CLI waits for a web login. */
  authKey?: string;
  /** `--hostname`; defaults to the client's name. */
  hostname?: string;
  /** More `tailscale up` flags, e.g. `["--advertise-tags=tag:ci", "--reset"]`. */
  extraArgs?: string[];
  /** `--timeout` for reaching Running. Default 60 s. */
  timeoutMs?: number;
}

export interface PingOptions {
  /** Per-ping timeout (`--timeout`). Default 5 s. */
  timeoutMs?: number;
  /** Number of pings (`-c`). Default 1. */
  count?: number;
  /** Keep pinging until a direct path is found (`--until-direct`). Default false. */
  untilDirect?: boolean;
  /** Ping type; default disco. */
  type?: "disco" | "tsmp" | "icmp";
}

export interface PingResult {
  /** The CLI exited 0. */
  ok: boolean;
  /** At least one pong came back. */
  pong: boolean;
  /** Path of the last pong: `ip:port` (direct), `DERP(code)`, `peer-relay(…)`, or the ping type. */
  via?: string;
  /** The last pong went over a direct UDP path. */
  direct: boolean;
  output: string;
}

/** A pending `tailscale up` without an auth key, which waits for a web login. */
export interface PendingLogin {
  /** Resolves to the AuthURL the server handed out (polls `tailscale status`). */
  authUrl(timeoutMs?: number): Promise<string>;
  /** Resolves when the `tailscale up` command ends. */
  done: Promise<CommandResult>;
}

export interface ClientSetup {
  name: string;
  namespace: Namespace;
  binaries: TailscaleBinaries;
  /** Directory for state and socket (short path; unix sockets are limited to 108 bytes). */
  stateDir: string;
  /** File for tailscaled's output. */
  logPath: string;
  /** Wrap long-running processes so they die with the test process. */
  dieWithParent: boolean;
  daemon?: DaemonOptions;
}

const DEFAULT_SOCKS5_PORT = 1055;
const DEFAULT_HTTP_PROXY_PORT = 1056;

export class TailscaleClient {
  readonly name: string;
  readonly namespace: Namespace;
  readonly binaries: TailscaleBinaries;
  readonly stateDir: string;
  readonly socketPath: string;
  readonly logPath: string;
  readonly #setup: ClientSetup;
  #daemon: ManagedProcess | undefined;

  constructor(setup: ClientSetup) {
    this.#setup = setup;
    this.name = setup.name;
    this.namespace = setup.namespace;
    this.binaries = setup.binaries;
    this.stateDir = setup.stateDir;
    this.socketPath = `${setup.stateDir}/tailscaled.sock`;
    this.logPath = setup.logPath;
  }

  /** The namespace's address on the test bridge (not the Tailscale IP). */
  get address(): string {
    return this.namespace.address;
  }

  // 127.0.0.1 rather than localhost: tailscaled resolves "localhost" through DNS here, and a DNS
  // server that does not answer from inside a namespace made the daemon exit after 10 s.

  /** `host:port` of tailscaled's SOCKS5 proxy, reachable from inside the namespace only. */
  get socks5Address(): string {
    return `127.0.0.1:${this.#setup.daemon?.socks5Port ?? DEFAULT_SOCKS5_PORT}`;
  }

  /** `host:port` of tailscaled's outbound HTTP proxy, reachable from inside the namespace only. */
  get httpProxyAddress(): string {
    return `127.0.0.1:${this.#setup.daemon?.httpProxyPort ?? DEFAULT_HTTP_PROXY_PORT}`;
  }

  get daemonRunning(): boolean {
    return this.#daemon?.running ?? false;
  }

  /** Starts tailscaled in the namespace and waits until its local API answers. */
  async startDaemon(): Promise<void> {
    if (this.#daemon?.running) throw new Error(`${this.name}: tailscaled already running`);
    const options = this.#setup.daemon ?? {};
    await Deno.mkdir(this.stateDir, { recursive: true });
    const argv = [
      this.binaries.tailscaled,
      "--tun=userspace-networking",
      `--statedir=${this.stateDir}`,
      `--socket=${this.socketPath}`,
      "--port=0",
      ...(options.logTarget ? [] : ["--no-logs-no-support"]),
      `--socks5-server=${this.socks5Address}`,
      `--outbound-http-proxy-listen=${this.httpProxyAddress}`,
      ...(options.verbose ? [`--verbose=${options.verbose}`] : []),
      ...(options.extraArgs ?? []),
    ];
    const env: Record<string, string> = {
      // The knobs Tailscale's own integration harness sets (tstest/integration).
      ...(options.logTarget
        ? { TS_LOG_TARGET: options.logTarget, TS_DEBUG_LOGTAIL_FLUSHDELAY: "0s" }
        : { TS_NO_LOGS_NO_SUPPORT: "true" }),
      TS_DISABLE_PORTMAPPER: "1",
      TS_ASSUME_NETWORK_UP_FOR_TEST: "1",
      TS_PANIC_IF_HIT_MAIN_CONTROL: "1",
      TS_DEBUG_PERMIT_HTTP_C2N: "1",
      TS_DEBUG_LOG_RATE: "all",
      TS_LOGS_DIR: this.stateDir,
      // A proxy inherited from the host would swallow the control connection.
      HTTP_PROXY: "",
      HTTPS_PROXY: "",
      ALL_PROXY: "",
      http_proxy: "",
      https_proxy: "",
      all_proxy: "",
      ...(options.debugMap ? { TS_DEBUG_MAP: String(options.debugMap) } : {}),
      ...(options.env ?? {}),
    };
    this.#daemon = await ManagedProcess.spawn(
      ["ip", "netns", "exec", this.namespace.name, ...argv],
      { env, logPath: this.logPath, dieWithParent: this.#setup.dieWithParent },
    );
    const daemon = this.#daemon;
    await waitFor(
      async () => {
        if (!daemon.running) {
          throw new StopWaiting(
            `tailscaled exited (${JSON.stringify(daemon.status)}):\n${await tailOfFile(
              this.logPath,
            )}`,
          );
        }
        return await this.status();
      },
      options.readyTimeoutMs ?? 30_000,
      {
        intervalMs: 100,
        description: `${this.name}: tailscaled to answer on ${this.socketPath}`,
      },
    ).catch(async (error) => {
      await this.stopDaemon();
      throw error;
    });
  }

  /** Stops tailscaled (SIGTERM, SIGKILL after `graceMs`). State stays on disk. */
  async stopDaemon(graceMs = 5_000): Promise<void> {
    const daemon = this.#daemon;
    this.#daemon = undefined;
    if (daemon) await daemon.stop(graceMs);
  }

  /**
   * Kills tailscaled with SIGKILL (a crash: no logout, no goodbye to the server; the kernel
   * closes its connections) and waits for it to exit. State stays on disk.
   */
  async killDaemon(): Promise<void> {
    const daemon = this.#daemon;
    this.#daemon = undefined;
    if (!daemon) return;
    daemon.kill("SIGKILL");
    await daemon.stop();
  }

  /**
   * Sends `signal` to tailscaled (`ip netns exec` and `setpriv` exec it, so the pid is its own):
   * SIGSTOP freezes it with its connections open (a hung router whose map stream looks alive),
   * SIGCONT resumes it.
   */
  signalDaemon(signal: "SIGSTOP" | "SIGCONT"): void {
    if (!this.#daemon?.running) throw new Error(`${this.name}: tailscaled is not running`);
    this.#daemon.kill(signal);
  }

  /** Stops and starts tailscaled with the same state directory. */
  async restartDaemon(): Promise<void> {
    await this.stopDaemon();
    await this.startDaemon();
  }

  /** Runs `argv` inside the client's namespace. */
  exec(argv: readonly string[], options: RunOptions = {}): Promise<CommandResult> {
    return runCommand(["ip", "netns", "exec", this.namespace.name, ...argv], options);
  }

  /** Runs the tailscale CLI (against this client's daemon) inside the namespace. */
  cli(args: readonly string[], options: RunOptions = {}): Promise<CommandResult> {
    return this.exec([this.binaries.tailscale, `--socket=${this.socketPath}`, ...args], options);
  }

  /** Like {@link cli} but throws {@link CommandError} unless the CLI exits 0; returns stdout. */
  async cliChecked(args: readonly string[], options: RunOptions = {}): Promise<string> {
    const result = await this.cli(args, options);
    if (!result.success) {
      const shown = `[${this.name}] tailscale ${displayCommand(args, options.redact)}`;
      throw new CommandError(shown, result);
    }
    return result.stdout;
  }

  /** `tailscale up …` until Running (or the timeout). Throws with the CLI's output on failure. */
  async up(options: UpOptions): Promise<void> {
    const timeoutMs = options.timeoutMs ?? 60_000;
    const watch = await this.#watchEngine();
    try {
      await this.cliChecked(this.#upArgs(options, timeoutMs), {
        timeoutMs: timeoutMs + 15_000,
        redact: options.authKey ? [options.authKey] : [],
      });
    } finally {
      try {
        watch?.close();
      } catch {
        // already gone with the daemon
      }
    }
  }

  /**
   * Asks tailscaled for engine updates (LocalAPI watch-ipn-bus, NotifyWatchEngineUpdates), which
   * makes it read its engine's status every 2 s, as it does for a GUI. Why: tailscaled goes from
   * Starting to Running on an engine status with a live DERP connection, and a status read just
   * before the DERP connection came up can replace the newer one (it counts DERP connections
   * before stamping its time); with no traffic nothing reads the status again, and a headless
   * `tailscale up` then waits in Starting forever. Seen once in CI with v1.80.3 (it is the same
   * in today's tailscaled). Null when the socket does not answer (tailscale up reports that).
   */
  async #watchEngine(): Promise<Deno.Conn | null> {
    let conn: Deno.Conn;
    try {
      conn = await Deno.connect({ transport: "unix", path: this.socketPath });
    } catch {
      return null;
    }
    const request = "GET /localapi/v0/watch-ipn-bus?mask=1 HTTP/1.1\r\n" +
      "Host: local-tailscaled.sock\r\n\r\n";
    try {
      await conn.write(new TextEncoder().encode(request));
    } catch {
      conn.close();
      return null;
    }
    // Read and drop what it sends, so tailscaled never waits on us; ends when closed. A refusal
    // is shown (the race above is then possible again), not thrown.
    (async () => {
      const buf = new Uint8Array(16 << 10);
      try {
        const n = await conn.read(buf);
        const status = n ? new TextDecoder().decode(buf.subarray(0, n)).split("\r\n")[0] : "";
        if (!status.startsWith("HTTP/1.1 200")) {
          console.warn(`${this.name}: the engine watch was refused: ${JSON.stringify(status)}`);
        }
        while ((await conn.read(buf)) !== null) { /* dropped */ }
      } catch {
        // closed by up() or by the daemon
      }
    })();
    return conn;
  }

  /**
   * Starts `tailscale up` without an auth key in the background; the server answers with an
   * AuthURL which the test completes out of band (e.g. `headscale nodes register`).
   */
  startLogin(options: Omit<UpOptions, "authKey">): PendingLogin {
    const timeoutMs = options.timeoutMs ?? 120_000;
    const done = this.cli(this.#upArgs(options, timeoutMs), { timeoutMs: timeoutMs + 15_000 });
    return {
      done,
      authUrl: (waitMs = 30_000) =>
        waitFor(async () => (await this.status()).AuthURL || undefined, waitMs, {
          description: `${this.name}: an AuthURL in tailscale status`,
        }),
    };
  }

  #upArgs(options: UpOptions, timeoutMs: number): string[] {
    return [
      "up",
      `--login-server=${options.loginServer}`,
      `--hostname=${options.hostname ?? this.name}`,
      ...(options.authKey ? [`--authkey=${options.authKey}`] : []),
      `--timeout=${Math.ceil(timeoutMs / 1000)}s`,
      ...(options.extraArgs ?? []),
    ];
  }

  /** `tailscale status --json`, parsed. */
  async status(): Promise<TailscaleStatus> {
    return parseStatus(await this.cliChecked(["status", "--json"], { timeoutMs: 15_000 }));
  }

  /** The client's Tailscale IPs (`tailscale ip`), IPv4 first. */
  async ips(): Promise<string[]> {
    const out = await this.cliChecked(["ip"], { timeoutMs: 15_000 });
    return out.split(/\s+/).filter((s) => s);
  }

  /** `tailscale ping` to a Tailscale IP or name; never throws for "no pong", see `ok`/`pong`. */
  async ping(target: string, options: PingOptions = {}): Promise<PingResult> {
    const timeoutMs = options.timeoutMs ?? 5_000;
    const count = options.count ?? 1;
    const args = [
      "ping",
      `-c=${count}`,
      `--timeout=${Math.ceil(timeoutMs / 1000)}s`,
      `--until-direct=${options.untilDirect ?? false}`,
      ...(options.type === "tsmp" ? ["--tsmp"] : options.type === "icmp" ? ["--icmp"] : []),
      target,
    ];
    // Each pong is followed by a 1 s pause in the CLI; allow for it and for startup.
    const result = await this.cli(args, { timeoutMs: count * (timeoutMs + 1_000) + 10_000 });
    const output = (result.stdout + result.stderr).trim();
    const pongs = [...output.matchAll(/^pong from .* via (\S+) in /gm)];
    const via = pongs.at(-1)?.[1];
    return {
      ok: result.success,
      pong: pongs.length > 0,
      via,
      direct: via !== undefined && /^\[?[0-9a-f.:]+\]?:\d+$/i.test(via),
      output,
    };
  }

  /** `tailscale logout`. */
  async logout(): Promise<void> {
    await this.cliChecked(["logout"], { timeoutMs: 30_000 });
  }

  /** `tailscale down`. */
  async down(): Promise<void> {
    await this.cliChecked(["down"], { timeoutMs: 30_000 });
  }

  /**
   * `tailscale netcheck --format=json`, run inside the namespace. Use it only once logged in: before
   * that the CLI tries Tailscale's public DERP map (which the test network refuses to route).
   */
  async netcheck(): Promise<NetcheckReport> {
    return parseNetcheck(
      await this.cliChecked(["netcheck", "--format=json"], { timeoutMs: 60_000 }),
    );
  }

  /** Waits until `BackendState` equals `state`; returns that status. */
  waitForBackendState(state: string, timeoutMs = 30_000): Promise<TailscaleStatus> {
    return waitFor(
      async () => {
        const status = await this.status();
        if (status.BackendState !== state) {
          throw new Error(`BackendState is ${status.BackendState}`);
        }
        return status;
      },
      timeoutMs,
      { description: `${this.name}: BackendState ${state}` },
    );
  }

  /** Waits until the status lists at least `count` peers (online ones only, if asked). */
  waitForPeers(
    count: number,
    timeoutMs = 30_000,
    options: { online?: boolean } = {},
  ): Promise<TailscaleStatus> {
    return waitFor(
      async () => {
        const status = await this.status();
        const all = peersOf(status);
        const peers = all.filter((p) => !options.online || p.Online);
        if (peers.length < count) {
          const seen = all.map((p) => `${p.HostName}${p.Online ? "" : "(offline)"}`).join(" ");
          throw new Error(`${peers.length} peers: ${seen || "none"}`);
        }
        return status;
      },
      timeoutMs,
      { description: `${this.name}: ${count} ${options.online ? "online " : ""}peers` },
    );
  }
}
