/**
 * Runs the real server (`main.ts`) as a child process with a temp config, for tests that need the
 * whole program: the CLI, crash durability, restarts.
 */
import { request } from "node:http";

const ROOT = new URL("../../", import.meta.url).pathname;
export const SERVER_FLAGS = [
  "--allow-net",
  "--allow-read",
  "--allow-write",
  "--allow-env",
  "--allow-sys",
];

export interface ServerProcess {
  dir: string;
  socket: string;
  configPath: string;
  baseUrl: string;
  child: Deno.ChildProcess;
  log(): Promise<string>;
  /** SIGKILL, no chance to flush anything. */
  kill(): Promise<void>;
  stop(): Promise<void>;
}

export function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

export function writeConfig(dir: string, port: number, extra = "", tls = false): string {
  const path = `${dir}/config.yaml`;
  Deno.writeTextFileSync(
    path,
    `server_url: ${tls ? "https" : "http"}://127.0.0.1:${port}
listen_addr: 127.0.0.1:${port}
metrics_listen_addr: ""
noise:
  private_key_path: ${dir}/noise_private.key
database:
  type: sqlite
  sqlite:
    path: ${dir}/db.sqlite
unix_socket: ${dir}/headscale.sock
derp:
  server:
    enabled: false
    private_key_path: ${dir}/derp_private.key
log:
  level: debug
${extra}`,
  );
  return path;
}

/** Starts main.ts with the config in `dir` (created if needed) and waits for /health. */
export async function startServer(
  dir?: string,
  extraConfig = "",
  opts: { caCertPath?: string; env?: Record<string, string> } = {},
): Promise<ServerProcess> {
  dir ??= await Deno.makeTempDir({ prefix: "hsd-test-" });
  const port = freePort();
  const tls = opts.caCertPath !== undefined;
  const configPath = writeConfig(dir, port, extraConfig, tls);
  const logPath = `${dir}/server.log`;
  const logFile = await Deno.open(logPath, { append: true, create: true, write: true });
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", ...SERVER_FLAGS, `${ROOT}main.ts`, "-c", configPath],
    cwd: dir,
    env: opts.env,
    stdout: "piped",
    stderr: "piped",
    stdin: "null",
  }).spawn();
  void child.stdout.pipeTo(logFile.writable, { preventClose: true }).catch(() => {});
  void child.stderr.pipeTo(logFile.writable).catch(() => {});
  const baseUrl = `${tls ? "https" : "http"}://127.0.0.1:${port}`;
  const client = tls
    ? Deno.createHttpClient({ caCerts: [await Deno.readTextFile(opts.caCertPath!)] })
    : undefined;
  const deadline = Date.now() + 30_000;
  for (;;) {
    try {
      const res = await fetch(`${baseUrl}/health`, { client });
      await res.body?.cancel();
      if (res.ok) break;
    } catch { /* not up yet */ }
    if (Date.now() > deadline) {
      try {
        child.kill("SIGKILL");
      } catch { /* gone */ }
      throw new Error(`server did not start:\n${await Deno.readTextFile(logPath)}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  client?.close();
  const exited = child.status;
  return {
    dir,
    socket: `${dir}/headscale.sock`,
    configPath,
    baseUrl,
    child,
    log: () => Deno.readTextFile(logPath),
    async kill() {
      try {
        child.kill("SIGKILL");
      } catch { /* already gone */ }
      await exited;
    },
    async stop() {
      try {
        child.kill("SIGTERM");
      } catch { /* already gone */ }
      await exited;
    },
  };
}

/** A JSON request to the REST API over the unix socket (local trust, no API key). */
export function socketJson(
  socket: string,
  method: string,
  path: string,
  body?: unknown,
): Promise<{ status: number; json: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    const data = body === undefined ? undefined : JSON.stringify(body);
    const req = request(
      {
        socketPath: socket,
        method,
        path,
        headers: data
          ? { "content-type": "application/json", "content-length": Buffer.byteLength(data) }
          : {},
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c) => chunks.push(c));
        res.on("end", () => {
          const text = Buffer.concat(chunks).toString("utf8");
          try {
            resolve({ status: res.statusCode ?? 0, json: text ? JSON.parse(text) : {} });
          } catch {
            reject(new Error(`not JSON (${res.statusCode}): ${text.slice(0, 200)}`));
          }
        });
        res.on("error", reject);
      },
    );
    req.on("error", reject);
    req.end(data);
  });
}
