/**
 * Our control server (main.ts) inside an integration harness: a config file in the run's work
 * directory, the process on the test bridge, and the admin CLI (cli.ts) against its unix socket.
 *
 * ```ts
 * const server = await startControlServer(h);
 * await server.createUser("alice");
 * const key = await server.createAuthKey("alice", { reusable: true });
 * await client.up({ loginServer: server.url, authKey: key });
 * const nodes = await server.listNodes();
 * ```
 */
import { fileURLToPath } from "node:url";
import { displayCommand } from "../harness/command.ts";
import {
  CommandError,
  type CommandResult,
  type Harness,
  type ListenAddress,
  runCommand,
  type ServerProcess,
} from "../harness.ts";
import { createTestCa, issueServerCertificate } from "./tls.ts";
import { freeUdpPort, type PostgresSettings, serverConfigYaml } from "./server_config.ts";

const REPO_ROOT = fileURLToPath(new URL("../../", import.meta.url));
const DENO_FLAGS = [
  "--allow-net",
  "--allow-read",
  "--allow-write",
  "--allow-env",
  "--allow-sys",
];

/** The parts of the API's Node message (proto3 JSON) the tests look at. */
export interface ApiNode {
  /** Decimal node id (int64 in proto3 JSON is a string). */
  id: string;
  machineKey: string;
  nodeKey: string;
  ipAddresses: string[];
  /** The hostname the client reported. */
  name: string;
  /** The DNS label in the tailnet. */
  givenName: string;
  user?: { id: string; name: string };
  /** Routes the node announces (Hostinfo.RoutableIPs). */
  availableRoutes?: string[];
  approvedRoutes?: string[];
  /** Routes it serves now: its primary subnet routes and approved exit routes. */
  subnetRoutes?: string[];
  expiry?: string;
  online: boolean;
  tags: string[];
  [field: string]: unknown;
}

export interface ControlServerOptions {
  /**
   * Tells servers of one harness apart: its directory `<workDir>/<name>`, log `<name>.log`, map
   * responses `mapresponses-<name>/`. Default `server` (map responses in `mapresponses/`).
   */
  name?: string;
  /** Extra YAML appended to the generated config (top-level keys only). */
  extraConfig?: string;
  /** Batch delay for change fan-out. Default 50ms, so tests see changes quickly. */
  batchChangeDelay?: string;
  /** `node.ephemeral.inactivity_timeout`; the server refuses anything up to 65s. Default 66s. */
  ephemeralInactivityTimeout?: string;
  /** `dns.base_domain`. Default `tailnet.internal`. */
  baseDomain?: string;
  /** PostgreSQL instead of SQLite (support/postgres.ts starts one per test). */
  postgres?: PostgresSettings;
  /** More keys of the `node` section, as YAML lines relative to it, e.g. `["routes:", "  ha: …"]`. */
  node?: string[];
  /** More keys of the `dns` section, as YAML lines relative to it, e.g. `["override_local_dns: true"]`. */
  dns?: string[];
  /**
   * Serve https with a throwaway CA (clients must trust `server.caCertPath` via SSL_CERT_FILE), as
   * real deployments do. Old clients need it: v1.80 forces an HTTPS dial after a recent failed
   * Noise dial, so with an http:// URL it cannot reconnect after a server restart.
   */
  tls?: boolean;
}

/** One headscale-deno server process in a harness, with its config and admin CLI. */
export class ControlServer {
  #process: ServerProcess | undefined;
  #name = "server";

  private constructor(
    readonly harness: Harness,
    readonly listen: ListenAddress,
    readonly dir: string,
    readonly configPath: string,
    readonly baseDomain: string,
    readonly scheme: "http" | "https" = "http",
    readonly caCertPath?: string,
    private readonly caCertPem?: string,
  ) {}

  /** Writes the config into `<workDir>/<name>` and starts the server (waits for /health). */
  static async start(harness: Harness, options: ControlServerOptions = {}): Promise<ControlServer> {
    const listen = harness.listenAddress();
    const name = options.name ?? "server";
    if (!/^[a-z0-9-]{1,30}$/.test(name)) throw new Error(`bad server name ${JSON.stringify(name)}`);
    const dir = `${harness.workDir}/${name}`;
    await Deno.mkdir(dir, { recursive: true });
    const stunPort = await freeUdpPort(listen.host);
    const baseDomain = options.baseDomain ?? "tailnet.internal";
    const tls = options.tls
      ? await (async () => {
        const ca = await createTestCa(`${dir}/tls`);
        const cert = await issueServerCertificate(ca, { ipAddresses: [listen.host] });
        return { ca, cert };
      })()
      : undefined;
    const scheme = tls ? "https" : "http";
    const config = serverConfigYaml({
      dir,
      serverUrl: `${scheme}://${listen.hostPort}`,
      listenAddr: listen.hostPort,
      tls: tls && { certPath: tls.cert.certPath, keyPath: tls.cert.keyPath },
      postgres: options.postgres,
      derp: { stunListenAddr: `${listen.host}:${stunPort}` },
      extra: [
        `node:`,
        `  ephemeral:`,
        `    inactivity_timeout: ${options.ephemeralInactivityTimeout ?? "66s"}`,
        ...(options.node ?? []).map((line) => `  ${line}`),
        `dns:`,
        `  magic_dns: true`,
        `  base_domain: ${baseDomain}`,
        ...(options.dns ?? []).map((line) => `  ${line}`),
        `tuning:`,
        `  batch_change_delay: ${options.batchChangeDelay ?? "50ms"}`,
        options.extraConfig ?? "",
      ],
    });
    const configPath = `${dir}/config.yaml`;
    await Deno.writeTextFile(configPath, config);
    const server = new ControlServer(
      harness,
      listen,
      dir,
      configPath,
      baseDomain,
      scheme,
      tls?.ca.certPath,
      tls?.ca.certPem,
    );
    server.#name = name;
    await server.#spawn();
    return server;
  }

  /**
   * Starts our server on a config file written elsewhere (e.g. the one headscale ran with):
   * `listen` is its listen_addr, `dir` its working directory, `tls` the CA clients trust (https).
   */
  static async startWithConfig(
    harness: Harness,
    o: {
      listen: ListenAddress;
      dir: string;
      configPath: string;
      baseDomain: string;
      tls?: { caCertPath: string; caCertPem: string };
    },
  ): Promise<ControlServer> {
    const server = new ControlServer(
      harness,
      o.listen,
      o.dir,
      o.configPath,
      o.baseDomain,
      o.tls ? "https" : "http",
      o.tls?.caCertPath,
      o.tls?.caCertPem,
    );
    await server.#spawn();
    return server;
  }

  /** `http(s)://<bridge ip>:<port>`: server_url and the clients' `--login-server`. */
  get url(): string {
    return `${this.scheme}://${this.listen.hostPort}`;
  }

  /** Environment a client needs to trust this server (https only). */
  get clientEnv(): Record<string, string> {
    return this.caCertPath ? { SSL_CERT_FILE: this.caCertPath } : {};
  }

  get running(): boolean {
    return this.#process?.running ?? false;
  }

  /** Where the server's output goes (appended across restarts). */
  get logPath(): string {
    return `${this.harness.artifactsDir}/${this.#name}.log`;
  }

  /** How the current server process ended, or undefined while it runs. */
  get exitStatus(): Deno.CommandStatus | undefined {
    return this.#process?.process.status;
  }

  async #spawn(): Promise<void> {
    const dumps = this.#name === "server" ? "mapresponses" : `mapresponses-${this.#name}`;
    const process = await this.harness.startServer({
      name: this.#name,
      command: [
        Deno.execPath(),
        "run",
        ...DENO_FLAGS,
        `${REPO_ROOT}main.ts`,
        "-c",
        this.configPath,
      ],
      url: this.url,
      cwd: this.dir,
      caCertPem: this.caCertPem,
      // Every map response sent, per node: kept with the other artifacts when a test fails.
      env: {
        HEADSCALE_DEBUG_DUMP_MAPRESPONSE_PATH: `${this.harness.artifactsDir}/${dumps}`,
      },
    });
    this.#process = process;
    // A crash (a signal, a native abort) may print nothing: note how the process ended.
    void process.process.exited.then((status) =>
      Deno.writeTextFile(
        this.logPath,
        `# ${new Date().toISOString()} server exited: ${JSON.stringify(status)}\n`,
        { append: true },
      ).catch(() => {})
    );
  }

  /** SIGTERM (SIGKILL after 5 s). The database and keys stay. */
  async stop(): Promise<void> {
    const process = this.#process;
    this.#process = undefined;
    await process?.stop();
  }

  /** Stops the server and starts it again with the same config, database and keys. */
  async restart(): Promise<void> {
    await this.stop();
    await this.#spawn();
  }

  /** Runs the admin CLI (`cli.ts -c <config> …`) and returns its result, whatever the exit code. */
  cliRaw(args: readonly string[]): Promise<CommandResult> {
    return runCommand(
      [Deno.execPath(), "run", ...DENO_FLAGS, `${REPO_ROOT}cli.ts`, "-c", this.configPath, ...args],
      { cwd: this.dir, timeoutMs: 30_000 },
    );
  }

  /** Runs the admin CLI with `-o json` and parses its output; throws unless it exits 0. */
  async cli<T = unknown>(args: readonly string[]): Promise<T> {
    const result = await this.cliRaw([...args, "-o", "json", "--force"]);
    if (!result.success) {
      const exited = this.#process && !this.#process.running
        ? ` (the server exited: ${JSON.stringify(this.exitStatus)})`
        : "";
      throw new CommandError(`headscale-deno ${displayCommand(args)}${exited}`, result);
    }
    try {
      return JSON.parse(result.stdout) as T;
    } catch {
      throw new Error(
        `headscale-deno ${displayCommand(args)}: output is not JSON: ${
          result.stdout.slice(0, 300)
        }`,
      );
    }
  }

  async createUser(name: string): Promise<{ id: string; name: string }> {
    return await this.cli(["users", "create", name]);
  }

  /** A pre-auth key of `user` (a secret: never log it). */
  async createAuthKey(
    user: string,
    options: { reusable?: boolean; ephemeral?: boolean } = {},
  ): Promise<string> {
    const args = ["--user", user];
    if (options.reusable) args.push("--reusable");
    if (options.ephemeral) args.push("--ephemeral");
    return await this.#newAuthKey(args);
  }

  /** A pre-auth key whose nodes carry `tag` and belong to no user (a secret: never log it). */
  async createTaggedAuthKey(tag: string): Promise<string> {
    return await this.#newAuthKey(["--tags", tag]);
  }

  async #newAuthKey(args: readonly string[]): Promise<string> {
    const created = await this.cli<{ key?: string }>([
      "preauthkeys",
      "create",
      ...args,
      "--expiration",
      "1h",
    ]);
    if (typeof created.key !== "string" || !created.key.startsWith("hskey-auth-")) {
      throw new Error("preauthkeys create printed no hskey-auth- key");
    }
    return created.key;
  }

  async listNodes(): Promise<ApiNode[]> {
    return await this.cli<ApiNode[]>(["nodes", "list"]);
  }

  /** The node whose reported hostname is `hostname`; throws unless exactly one matches. */
  async nodeByHostname(hostname: string): Promise<ApiNode> {
    const nodes = (await this.listNodes()).filter((n) => n.name === hostname);
    if (nodes.length !== 1) {
      throw new Error(`expected one node with hostname ${hostname}, found ${nodes.length}`);
    }
    return nodes[0];
  }

  async expireNode(id: string): Promise<ApiNode> {
    return await this.cli<ApiNode>(["nodes", "expire", "--identifier", id]);
  }

  async deleteNode(id: string): Promise<void> {
    await this.cli(["nodes", "delete", "--identifier", id]);
  }

  /** Approves a waiting interactive login as a node of `user`. */
  async authRegister(authId: string, user: string): Promise<ApiNode> {
    return await this.cli<ApiNode>(["auth", "register", "--auth-id", authId, "--user", user]);
  }

  async authReject(authId: string): Promise<void> {
    await this.cli(["auth", "reject", "--auth-id", authId]);
  }

  /** Replaces the approved routes of node `id` (`nodes approve-routes`; [] clears them). */
  async approveRoutes(id: string, routes: readonly string[]): Promise<ApiNode> {
    return await this.cli<ApiNode>([
      "nodes",
      "approve-routes",
      "--identifier",
      id,
      "--routes",
      routes.join(","),
    ]);
  }

  /** `nodes list-routes`: the nodes that announce, have approved or serve a route. */
  async listRoutes(): Promise<ApiNode[]> {
    return await this.cli<ApiNode[]>(["nodes", "list-routes"]);
  }

  /** Sets the policy (`policy set -f`, database mode). */
  async setPolicy(text: string): Promise<void> {
    const path = `${this.dir}/policy-${crypto.randomUUID()}.hujson`;
    await Deno.writeTextFile(path, text);
    await this.cli(["policy", "set", "-f", path]);
  }

  /** The fully qualified MagicDNS name a client shows for a node, e.g. `a.tailnet.internal.`. */
  dnsName(node: ApiNode): string {
    return `${node.givenName}.${this.baseDomain}.`;
  }
}

/** {@link ControlServer.start}. */
export function startControlServer(
  harness: Harness,
  options: ControlServerOptions = {},
): Promise<ControlServer> {
  return ControlServer.start(harness, options);
}
