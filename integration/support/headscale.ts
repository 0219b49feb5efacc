/**
 * headscale itself (v0.29.2, the one binary that is both its server and its CLI, built by
 * scripts/install_headscale_cli.sh into the cache, never into the repo) inside an integration
 * harness: a config file that headscale and our server both read unchanged, `headscale serve` on
 * the test bridge, and headscale's Go CLI over its unix socket or remotely with an API key.
 *
 * ```ts
 * const bin = await headscaleBinary();
 * const config = await writeSharedConfig(h);
 * const hs = await Headscale.start(h, bin.path!, config);
 * const alice = await hs.cli<{ id: number }>(["users", "create", "alice"]);
 * ```
 */
import { fileURLToPath } from "node:url";
import {
  CommandError,
  type CommandResult,
  displayCommand,
  runCommand,
} from "../harness/command.ts";
import type { Harness, ListenAddress, ServerProcess } from "../harness.ts";
import { freeTcpPort, freeUdpPort } from "./server_config.ts";
import { createTestCa, issueServerCertificate, type TestCa } from "./tls.ts";

const REPO_ROOT = fileURLToPath(new URL("../../", import.meta.url));

/**
 * The headscale binary: `HEADSCALE_GO_CLI` if set, else what scripts/install_headscale_cli.sh
 * builds (or finds in its cache). `reason` says why there is none (no Go, a failed build).
 */
export async function headscaleBinary(): Promise<{ path?: string; reason?: string }> {
  const explicit = Deno.env.get("HEADSCALE_GO_CLI");
  if (explicit) return { path: explicit };
  const out = await runCommand(["bash", `${REPO_ROOT}scripts/install_headscale_cli.sh`], {
    // A cold build downloads headscale's modules and compiles it: minutes.
    timeoutMs: 20 * 60_000,
  });
  if (!out.success) {
    const why = out.stderr.trim().split("\n").slice(-3).join(" | ");
    return { reason: `scripts/install_headscale_cli.sh failed: ${why}` };
  }
  return { path: out.stdout.trim().split("\n").at(-1) };
}

/** A config file both servers run with: one address, one set of key files, one database path. */
export interface SharedConfig {
  /** Working directory: keys, database, unix socket, config. */
  dir: string;
  configPath: string;
  /** listen_addr; server_url is `https://<hostPort>`. */
  listen: ListenAddress;
  /** grpc_listen_addr (`host:port`, TLS with the same certificate). */
  grpcAddress: string;
  /** The database file named by database.sqlite.path. */
  databasePath: string;
  socketPath: string;
  baseDomain: string;
  ca: TestCa;
}

/**
 * Writes a headscale v0.29.2 config (only keys from its config-example.yaml) into
 * `<workDir>/server`: https on the bridge with a throwaway CA, gRPC on TLS, the embedded DERP
 * relay with STUN, SQLite, MagicDNS, the policy in the database.
 */
export async function writeSharedConfig(h: Harness): Promise<SharedConfig> {
  const dir = `${h.workDir}/server`;
  await Deno.mkdir(dir, { recursive: true });
  const listen = h.listenAddress();
  const grpcAddress = `${listen.host}:${freeTcpPort(listen.host)}`;
  const stunAddress = `${listen.host}:${await freeUdpPort(listen.host)}`;
  const ca = await createTestCa(`${h.workDir}/tls`);
  const cert = await issueServerCertificate(ca, { ipAddresses: [listen.host] });
  const baseDomain = "tailnet.internal";
  const databasePath = `${dir}/db.sqlite`;
  const socketPath = `${dir}/headscale.sock`;
  const yaml = [
    `server_url: https://${listen.hostPort}`,
    `listen_addr: ${listen.hostPort}`,
    `metrics_listen_addr: 127.0.0.1:${freeTcpPort()}`,
    `grpc_listen_addr: ${grpcAddress}`,
    `grpc_allow_insecure: false`,
    `tls_cert_path: ${cert.certPath}`,
    `tls_key_path: ${cert.keyPath}`,
    `noise:`,
    `  private_key_path: ${dir}/noise_private.key`,
    `prefixes:`,
    `  v4: 100.64.0.0/10`,
    `  v6: fd7a:115c:a1e0::/48`,
    `  allocation: sequential`,
    `derp:`,
    `  server:`,
    `    enabled: true`,
    `    region_id: 999`,
    `    region_code: "headscale"`,
    `    region_name: "Headscale Embedded DERP"`,
    `    verify_clients: true`,
    `    stun_listen_addr: "${stunAddress}"`,
    `    private_key_path: ${dir}/derp_server_private.key`,
    `    automatically_add_embedded_derp_region: true`,
    `  urls: []`,
    `  paths: []`,
    `  auto_update_enabled: false`,
    `disable_check_updates: true`,
    `node:`,
    `  expiry: 0`,
    `  ephemeral:`,
    `    inactivity_timeout: 30m`,
    `database:`,
    `  type: sqlite`,
    `  sqlite:`,
    `    path: ${databasePath}`,
    `    write_ahead_log: true`,
    `log:`,
    `  level: debug`,
    `  format: text`,
    `policy:`,
    `  mode: database`,
    `dns:`,
    `  magic_dns: true`,
    `  base_domain: ${baseDomain}`,
    `  override_local_dns: false`,
    `  nameservers:`,
    `    global: []`,
    `unix_socket: ${socketPath}`,
    `unix_socket_permission: "0770"`,
    `logtail:`,
    `  enabled: false`,
  ];
  const configPath = `${dir}/config.yaml`;
  await Deno.writeTextFile(configPath, yaml.join("\n") + "\n");
  return { dir, configPath, listen, grpcAddress, databasePath, socketPath, baseDomain, ca };
}

/** `headscale serve` in a harness, and its Go CLI. */
export class Headscale {
  #process: ServerProcess | undefined;

  private constructor(
    readonly harness: Harness,
    readonly binary: string,
    readonly config: SharedConfig,
  ) {}

  /** Starts `headscale serve -c <config>` on the bridge; its log is `headscale.log`. */
  static async start(harness: Harness, binary: string, config: SharedConfig): Promise<Headscale> {
    const hs = new Headscale(harness, binary, config);
    hs.#process = await harness.startServer({
      name: "headscale",
      command: [binary, "serve", "-c", config.configPath],
      url: `https://${config.listen.hostPort}`,
      cwd: config.dir,
      caCertPem: config.ca.certPem,
      env: { HOME: config.dir },
    });
    return hs;
  }

  /** SIGTERM (SIGKILL after 10 s); returns how it ended. */
  async stop(): Promise<Deno.CommandStatus | undefined> {
    const process = this.#process;
    this.#process = undefined;
    return await process?.stop(10_000);
  }

  /**
   * Runs headscale's Go CLI with the shared config (the unix socket), or remotely over gRPC/TLS
   * with `apiKey` to whatever listens on grpc_listen_addr. Returns the result, whatever the code.
   */
  cliRaw(args: readonly string[], options: { apiKey?: string } = {}): Promise<CommandResult> {
    const remote: Record<string, string> = options.apiKey
      ? {
        HEADSCALE_CLI_ADDRESS: this.config.grpcAddress,
        HEADSCALE_CLI_API_KEY: options.apiKey,
        SSL_CERT_FILE: this.config.ca.certPath,
      }
      : {};
    return runCommand([this.binary, "-c", this.config.configPath, ...args], {
      cwd: this.config.dir,
      env: { HOME: this.config.dir, ...remote },
      timeoutMs: 30_000,
      redact: options.apiKey ? [options.apiKey] : [],
    });
  }

  /** {@link cliRaw} with `-o json --force`, parsed; throws unless it exits 0. */
  async cli<T = unknown>(args: readonly string[], options: { apiKey?: string } = {}): Promise<T> {
    const result = await this.cliRaw([...args, "-o", "json", "--force"], options);
    const shown = `headscale ${displayCommand(args)}${options.apiKey ? " (remote)" : ""}`;
    if (!result.success) throw new CommandError(shown, result);
    try {
      return JSON.parse(result.stdout) as T;
    } catch {
      throw new Error(`${shown}: output is not JSON: ${result.stdout.slice(0, 300)}`);
    }
  }
}
