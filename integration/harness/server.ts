/** Starting a control server process for the integration tests and waiting until it is healthy. */
import { ManagedProcess, tailOfFile } from "./command.ts";
import { StopWaiting, waitFor } from "./wait.ts";

/** Where a server should listen: a free TCP port on the test bridge. */
export interface ListenAddress {
  host: string;
  port: number;
  /** `host:port`. */
  hostPort: string;
  /** `http://host:port`. */
  url: string;
}

export interface ServerOptions {
  /** Program and arguments, e.g. `["deno", "run", "-A", "main.ts", "-c", configPath]`. */
  command: string[];
  /** Base URL the server answers on (usually a {@link ListenAddress}'s `url`). */
  url: string;
  env?: Record<string, string>;
  cwd?: string;
  /** Path polled until it answers 200. Default `/health`. */
  healthPath?: string;
  /** Default 60 s (a first `deno run` may compile for a while). */
  readyTimeoutMs?: number;
  /** Strings never to show when the command line is printed. */
  redact?: string[];
  /** PEM of a private CA to trust for an https `url`'s health check. */
  caCertPem?: string;
}

export interface ServerSetup {
  logPath: string;
  dieWithParent: boolean;
}

/** A running server process. */
export class ServerProcess {
  private constructor(
    readonly url: string,
    readonly logPath: string,
    readonly process: ManagedProcess,
  ) {}

  /** Spawns the server and resolves once `GET <url><healthPath>` answers 200. */
  static async start(options: ServerOptions, setup: ServerSetup): Promise<ServerProcess> {
    const process = await ManagedProcess.spawn(options.command, {
      env: options.env,
      cwd: options.cwd,
      logPath: setup.logPath,
      dieWithParent: setup.dieWithParent,
      redact: options.redact,
    });
    const server = new ServerProcess(options.url.replace(/\/$/, ""), setup.logPath, process);
    const healthUrl = server.url + (options.healthPath ?? "/health");
    const client = options.caCertPem
      ? Deno.createHttpClient({ caCerts: [options.caCertPem] })
      : undefined;
    try {
      await waitFor(
        async () => {
          if (!process.running) {
            throw new StopWaiting(
              `server exited (${
                JSON.stringify(process.status)
              }) before ${healthUrl} answered:\n${await tailOfFile(
                setup.logPath,
              )}`,
            );
          }
          const response = await fetch(healthUrl, { signal: AbortSignal.timeout(2_000), client });
          await response.body?.cancel();
          if (response.status !== 200) throw new Error(`${healthUrl} answered ${response.status}`);
          return true;
        },
        options.readyTimeoutMs ?? 60_000,
        {
          intervalMs: 100,
          description: `server health at ${healthUrl}`,
        },
      );
    } catch (error) {
      await process.stop();
      throw error;
    } finally {
      client?.close();
    }
    return server;
  }

  get running(): boolean {
    return this.process.running;
  }

  /** SIGTERM, then SIGKILL after `graceMs`. */
  async stop(graceMs = 5_000): Promise<Deno.CommandStatus> {
    return await this.process.stop(graceMs);
  }
}
