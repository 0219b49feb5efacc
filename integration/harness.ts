/**
 * Integration harness: official Tailscale clients in network namespaces around a control server
 * on a test bridge. See docs/integration.md.
 *
 * ```ts
 * Deno.test({ name: "two nodes ping", ignore: skipReason !== undefined }, () =>
 *   withHarness({ name: "ping" }, async (h) => {
 *     const listen = h.listenAddress();
 *     await h.startServer({ command: [...], url: listen.url });
 *     const [a, b] = await h.addClients(["a", "b"]);
 *     ...
 *   }));
 * ```
 */
import { fileURLToPath } from "node:url";
import {
  ensureTailscale,
  type TailscaleBinaries,
  type TailscaleVersion,
} from "./harness/binaries.ts";
import { type DaemonOptions, TailscaleClient } from "./harness/client.ts";
import {
  canDieWithParent,
  type CommandResult,
  runCommand,
  type RunOptions,
} from "./harness/command.ts";
import {
  listHarnessInterfaces,
  type Namespace,
  type NetworkBehind,
  TEST_SUBNET,
  TestNetwork,
} from "./harness/network.ts";
import { type ListenAddress, type ServerOptions, ServerProcess } from "./harness/server.ts";

export {
  ensureTailscale,
  type TailscaleBinaries,
  type TailscaleVersion,
} from "./harness/binaries.ts";
export {
  type DaemonOptions,
  type PendingLogin,
  type PingOptions,
  type PingResult,
  TailscaleClient,
  type UpOptions,
} from "./harness/client.ts";
export {
  CommandError,
  type CommandResult,
  runCommand,
  type RunOptions,
} from "./harness/command.ts";
export {
  listHarnessInterfaces,
  type Namespace,
  type NetworkBehind,
  sweepStaleRuns,
  TEST_SUBNET,
  TestNetwork,
} from "./harness/network.ts";
export { type ListenAddress, type ServerOptions, ServerProcess } from "./harness/server.ts";
export {
  type NetcheckReport,
  parseStatus,
  peersOf,
  type PeerStatus,
  type TailscaleStatus,
} from "./harness/status.ts";
export { StopWaiting, waitFor, type WaitOptions, WaitTimeoutError } from "./harness/wait.ts";

export interface HarnessOptions {
  /** Short label for the run id and artifact folder, e.g. `smoke`. */
  name: string;
  /**
   * Client version for {@link Harness.addClient} when none is given. Default: the
   * HEADSCALE_IT_TAILSCALE_VERSION environment variable, else `latest`.
   */
  tailscaleVersion?: TailscaleVersion;
  /** Keep the artifact folder even when the test passes (also: HEADSCALE_IT_KEEP_ARTIFACTS=1). */
  keepArtifacts?: boolean;
  /** Where run folders go. Default `<repo>/.artifacts`. */
  artifactsRoot?: string;
}

export interface AddClientOptions extends DaemonOptions {
  /** Default: the harness's `tailscaleVersion`. */
  version?: TailscaleVersion;
  /** Start tailscaled right away (default true). */
  startDaemon?: boolean;
}

export interface CloseOptions {
  failed: boolean;
  /** The failure, written to `error.txt` in the artifacts. */
  error?: unknown;
}

const REPO_ROOT = fileURLToPath(new URL("..", import.meta.url));
const CLIENT_NAME = /^[a-z0-9](?:[a-z0-9-]{0,30}[a-z0-9])?$/;

/**
 * Why the integration tests cannot run here (not root, no iproute2), or undefined when they can.
 * Tests pass it as `ignore` and print it.
 */
export async function integrationSkipReason(): Promise<string | undefined> {
  if (Deno.build.os !== "linux") return "integration tests need Linux network namespaces";
  if (Deno.uid() !== 0) return "integration tests need root (network namespaces, bridges)";
  const ip = await runCommand(["ip", "-V"]).catch(() => undefined);
  if (!ip?.success) return "integration tests need iproute2 (`ip`): apt-get install -y iproute2";
  return undefined;
}

/** One integration run: its network, server(s), clients and artifact folder. */
export class Harness {
  readonly #clients: TailscaleClient[] = [];
  readonly #clientNames = new Set<string>();
  readonly #servers: ServerProcess[] = [];
  readonly #binaries = new Map<string, Promise<TailscaleBinaries>>();
  readonly #cleanups: (() => Promise<unknown>)[] = [];
  #closed = false;

  private constructor(
    readonly options: HarnessOptions,
    readonly runId: string,
    readonly network: TestNetwork,
    /** `.artifacts/<run-id>/`: logs as they are written, status dumps on failure. */
    readonly artifactsDir: string,
    /** Temporary state directories and sockets (never kept: tailscaled state holds private keys). */
    readonly workDir: string,
    readonly dieWithParent: boolean,
  ) {}

  /** Sweeps leftovers of crashed runs, sets up the bridge, artifact folder and work directory. */
  static async create(options: HarnessOptions): Promise<Harness> {
    if (!/^[a-z0-9-]{1,40}$/.test(options.name)) {
      throw new Error(
        `harness name must be 1-40 of [a-z0-9-], got ${JSON.stringify(options.name)}`,
      );
    }
    const skip = await integrationSkipReason();
    if (skip) throw new Error(skip);
    const dieWithParent = await canDieWithParent();
    const network = await TestNetwork.create();
    try {
      const stamp = new Date().toISOString().replace(/[-:]/g, "").replace(/\.\d+Z$/, "");
      const runId = `${options.name}-${stamp}-n${network.index}`;
      const artifactsDir = `${options.artifactsRoot ?? `${REPO_ROOT}.artifacts`}/${runId}`;
      await Deno.mkdir(artifactsDir, { recursive: true });
      const tmp = Deno.env.get("TMPDIR") || "/tmp";
      await sweepStaleWorkDirs(tmp);
      const workDir = await Deno.makeTempDir({ dir: tmp, prefix: `hsd-it-${network.index}-` });
      return new Harness(options, runId, network, artifactsDir, workDir, dieWithParent);
    } catch (error) {
      await network.destroy();
      throw error;
    }
  }

  /** Where servers listen and the clients' default gateway, e.g. `172.31.137.1`. */
  get bridgeAddress(): string {
    return this.network.bridgeAddress;
  }

  get clients(): readonly TailscaleClient[] {
    return this.#clients;
  }

  get servers(): readonly ServerProcess[] {
    return this.#servers;
  }

  /** A free TCP port on the bridge address, for a server's listen address and server_url. */
  listenAddress(): ListenAddress {
    const listener = Deno.listen({ hostname: this.bridgeAddress, port: 0 });
    const port = (listener.addr as Deno.NetAddr).port;
    listener.close();
    const hostPort = `${this.bridgeAddress}:${port}`;
    return { host: this.bridgeAddress, port, hostPort, url: `http://${hostPort}` };
  }

  /**
   * Starts a server process and waits for `GET /health`. Its output goes to
   * `<artifacts>/<name>.log` (default `server.log`). Stopped by {@link close}.
   */
  async startServer(options: ServerOptions & { name?: string }): Promise<ServerProcess> {
    this.#assertOpen();
    const name = options.name ?? "server";
    const server = await ServerProcess.start(options, {
      logPath: `${this.artifactsDir}/${name}.log`,
      dieWithParent: this.dieWithParent,
    });
    this.#servers.push(server);
    return server;
  }

  /** A namespace on the bridge without tailscaled (for raw network checks). */
  addNamespace(): Promise<Namespace> {
    this.#assertOpen();
    return this.network.addNamespace();
  }

  /**
   * A namespace reachable only through `gateway`'s (a "LAN" behind a subnet router, an "internet"
   * behind an exit node, with `beyond`): `<prefix>.1` on the gateway, `<prefix>.10` behind it.
   * See {@link TestNetwork.addNetworkBehind}.
   */
  addNetworkBehind(
    gateway: TailscaleClient | Namespace,
    prefix: string,
    options: { beyond?: string } = {},
  ): Promise<NetworkBehind> {
    this.#assertOpen();
    const ns = gateway instanceof TailscaleClient ? gateway.namespace : gateway;
    return this.network.addNetworkBehind(ns, prefix, options);
  }

  /** Runs `cleanup` when the harness closes, before daemons and namespaces go (latest first). */
  onClose(cleanup: () => Promise<unknown>): void {
    this.#cleanups.push(cleanup);
  }

  /** Runs `argv` inside namespace `ns`. */
  execIn(ns: Namespace, argv: readonly string[], options: RunOptions = {}): Promise<CommandResult> {
    return runCommand(this.network.execArgv(ns, argv), options);
  }

  /**
   * A new client: its own namespace and tailscaled (started unless `startDaemon: false`), logging
   * to `<artifacts>/<name>.tailscaled.log`. `name` is also the default `--hostname`.
   */
  async addClient(name: string, options: AddClientOptions = {}): Promise<TailscaleClient> {
    this.#assertOpen();
    if (!CLIENT_NAME.test(name)) {
      throw new Error(`client name must match ${CLIENT_NAME}, got ${JSON.stringify(name)}`);
    }
    if (this.#clientNames.has(name)) throw new Error(`duplicate client ${name}`);
    this.#clientNames.add(name);
    const { version, startDaemon, ...daemon } = options;
    const binaries = await this.binaries(version ?? this.defaultVersion);
    const namespace = await this.network.addNamespace();
    const client = new TailscaleClient({
      name,
      namespace,
      binaries,
      stateDir: `${this.workDir}/${name}`,
      logPath: `${this.artifactsDir}/${name}.tailscaled.log`,
      dieWithParent: this.dieWithParent,
      daemon,
    });
    this.#clients.push(client);
    if (startDaemon ?? true) await client.startDaemon();
    return client;
  }

  /** {@link addClient} for several names at once, started in parallel. */
  addClients(names: readonly string[], options: AddClientOptions = {}): Promise<TailscaleClient[]> {
    return Promise.all(names.map((name) => this.addClient(name, options)));
  }

  /** The client version used when {@link addClient} is given none. */
  get defaultVersion(): TailscaleVersion {
    if (this.options.tailscaleVersion) return this.options.tailscaleVersion;
    const fromEnv = Deno.env.get("HEADSCALE_IT_TAILSCALE_VERSION");
    if (!fromEnv) return "latest";
    if (!/^(latest|oldest|v\d+\.\d+\.\d+)$/.test(fromEnv)) {
      throw new Error(
        `HEADSCALE_IT_TAILSCALE_VERSION must be latest, oldest or vX.Y.Z: ${fromEnv}`,
      );
    }
    return fromEnv as TailscaleVersion;
  }

  /** The binaries of one client version (built once per run if missing). */
  binaries(version: TailscaleVersion): Promise<TailscaleBinaries> {
    let pending = this.#binaries.get(version);
    if (!pending) {
      pending = ensureTailscale(version);
      this.#binaries.set(version, pending);
    }
    return pending;
  }

  /**
   * Writes what explains a failure next to the logs: `tailscale status --json` of every client
   * with a running daemon, the network layout, and the error. Returns the folder.
   */
  async collectArtifacts(error?: unknown): Promise<string> {
    const write = (file: string, text: string) =>
      Deno.writeTextFile(`${this.artifactsDir}/${file}`, text).catch(() => {});
    if (error !== undefined) {
      await write(
        "error.txt",
        error instanceof Error ? `${error.stack ?? error.message}\n` : `${String(error)}\n`,
      );
    }
    await Promise.all(this.#clients.map(async (client) => {
      if (!client.daemonRunning) return;
      const result = await client.cli(["status", "--json"], { timeoutMs: 10_000 });
      await write(
        `${client.name}.status.json`,
        result.success ? result.stdout : `status failed: ${result.stderr}${result.stdout}`,
      );
    }));
    const layout = [
      `run ${this.runId}`,
      `bridge ${this.network.bridge} ${this.network.bridgeAddress}/24 (test subnet ${TEST_SUBNET})`,
      ...this.#clients.map((c) =>
        `client ${c.name}: netns ${c.namespace.name} ${c.address} tailscale ${c.binaries.version}`
      ),
      ...this.#servers.map((s) => `server ${s.url} (${s.process.commandLine})`),
    ];
    await write("network.txt", layout.join("\n") + "\n");
    return this.artifactsDir;
  }

  /**
   * Stops clients and servers, removes the network and the work directory. On failure keeps the
   * artifact folder (after {@link collectArtifacts}) and prints its path; on success removes it
   * unless asked to keep it. Throws if the cleanup itself left something behind after a success.
   */
  async close(options: CloseOptions): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    if (options.failed) await this.collectArtifacts(options.error).catch(() => {});
    // Before the daemons stop, so their shutdown lines do not crowd out the interesting ones.
    const digest = options.failed ? await this.failureDigest() : undefined;
    for (const cleanup of this.#cleanups.reverse()) await cleanup().catch(() => {});
    await Promise.all(this.#clients.map((c) => c.stopDaemon().catch(() => {})));
    await Promise.all(this.#servers.map((s) => s.stop().catch(() => {})));
    const problems = await this.network.destroy();
    await Deno.remove(this.workDir, { recursive: true }).catch(() => {});
    const keep = options.failed || this.options.keepArtifacts ||
      Deno.env.get("HEADSCALE_IT_KEEP_ARTIFACTS") === "1";
    if (digest) console.error(digest);
    if (keep) {
      console.error(`integration artifacts (${this.runId}): ${this.artifactsDir}`);
    } else {
      await Deno.remove(this.artifactsDir, { recursive: true }).catch(() => {});
    }
    if (problems.length > 0) {
      const message = `integration cleanup left things behind:\n  ${problems.join("\n  ")}`;
      if (options.failed) console.error(message);
      else throw new Error(message);
    }
  }

  /**
   * The ends of the server logs and the control-related lines of each client log, for CI output
   * where the artifact folder itself is out of reach.
   */
  async failureDigest(): Promise<string> {
    const tail = async (path: string, lines: number, keep?: RegExp) => {
      const text = await Deno.readTextFile(path).catch(() => "");
      const all = text.split("\n").filter((l) => l !== "" && (!keep || keep.test(l)));
      return all.slice(-lines).map((l) => `  ${l.slice(0, 300)}`).join("\n");
    };
    const parts: string[] = [`--- failure digest (${this.runId}) ---`];
    // A restarted server appends to the same log.
    for (const path of new Set(this.#servers.map((s) => s.logPath))) {
      parts.push(`${path}, last warnings:`, await tail(path, 15, /^\S+ (WARN|ERROR)/));
      parts.push(`${path}, last lines:`, await tail(path, 40));
    }
    // Control, DERP and state lines, without the stream of "health(…): ok".
    const control =
      /^(?!.*\): ok$).*(control|PollNetMap|netmap|Received error|backoff|Routine|derp|health|ipn state|Reconfig)/i;
    for (const client of this.#clients) {
      parts.push(`${client.name} (control, DERP and health lines):`);
      parts.push(await tail(client.logPath, 20, control));
      parts.push(`  status: ${await this.#statusSummary(client.name)}`);
    }
    parts.push(`map responses sent: ${await this.#mapResponseSummary()}`);
    parts.push("--- end of failure digest ---");
    return parts.join("\n");
  }

  /** Per node id: how many map responses the servers dumped, and the last one's name. */
  async #mapResponseSummary(): Promise<string> {
    const root = `${this.artifactsDir}/mapresponses`;
    const lines: string[] = [];
    try {
      for await (const dir of Deno.readDir(root)) {
        if (!dir.isDirectory) continue;
        const files: string[] = [];
        for await (const f of Deno.readDir(`${root}/${dir.name}`)) files.push(f.name);
        files.sort();
        lines.push(`node ${dir.name}: ${files.length}, last ${files.at(-1) ?? "-"}`);
      }
    } catch {
      return "(none dumped)";
    }
    return lines.length === 0 ? "(none)" : `\n  ${lines.sort().join("\n  ")}`;
  }

  /** BackendState, health warnings and home DERP from the status {@link collectArtifacts} kept. */
  async #statusSummary(name: string): Promise<string> {
    const text = await Deno.readTextFile(`${this.artifactsDir}/${name}.status.json`).catch(() =>
      ""
    );
    try {
      const status = JSON.parse(text);
      const peers = Object.values(status.Peer ?? {}) as { Online?: boolean; Relay?: string }[];
      return [
        `state=${status.BackendState}`,
        `relay=${status.Self?.Relay || "-"}`,
        `peers=${peers.length} online=${peers.filter((p) => p.Online).length}`,
        `health=${JSON.stringify(status.Health ?? [])}`,
      ].join(" ");
    } catch {
      return text.trim().slice(0, 200) || "(none)";
    }
  }

  #assertOpen(): void {
    if (this.#closed) throw new Error("harness already closed");
  }
}

/** Removes `<tmp>/hsd-it-N-*` work directories of runs whose bridge `hsdbrN` is gone. */
async function sweepStaleWorkDirs(tmp: string): Promise<void> {
  const live = new Set(await listHarnessInterfaces());
  for await (const entry of Deno.readDir(tmp)) {
    const match = /^hsd-it-(\d+)-/.exec(entry.name);
    if (!entry.isDirectory || !match || live.has(`hsdbr${match[1]}`)) continue;
    await Deno.remove(`${tmp}/${entry.name}`, { recursive: true }).catch(() => {});
  }
}

/**
 * Creates a harness, runs `body`, and always cleans up: artifacts are kept (and their path
 * printed) when `body` throws, removed when it succeeds. Ctrl-C/SIGTERM also clean up.
 */
export async function withHarness<T>(
  options: HarnessOptions,
  body: (harness: Harness) => Promise<T>,
): Promise<T> {
  const harness = await Harness.create(options);
  const onSignal = () => {
    harness.close({ failed: true, error: new Error("interrupted") }).finally(() => Deno.exit(130));
  };
  const signals: Deno.Signal[] = ["SIGINT", "SIGTERM"];
  for (const signal of signals) Deno.addSignalListener(signal, onSignal);
  try {
    let result: T;
    try {
      result = await body(harness);
    } catch (error) {
      await harness.close({ failed: true, error });
      throw error;
    }
    await harness.close({ failed: false });
    return result;
  } finally {
    for (const signal of signals) Deno.removeSignalListener(signal, onSignal);
  }
}
