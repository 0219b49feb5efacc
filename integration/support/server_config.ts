/**
 * The config file our server runs with in integration tests and benchmarks: every run keeps its
 * keys, database and socket in its own directory. Written once here; callers add what differs.
 */
import { createSocket } from "node:dgram";

/** A PostgreSQL database for the server (see support/postgres.ts). */
export interface PostgresSettings {
  host: string;
  port: number;
  name: string;
  user: string;
  pass: string;
}

export interface ServerConfigOptions {
  /** Directory for keys, the database and the unix socket. */
  dir: string;
  /** server_url, e.g. `https://172.31.5.1:4443`. */
  serverUrl: string;
  /** listen_addr, `host:port`. */
  listenAddr: string;
  tls?: { certPath: string; keyPath: string };
  /** PostgreSQL instead of the default SQLite file in `dir`. */
  postgres?: PostgresSettings;
  derp?: {
    enabled?: boolean;
    verifyClients?: boolean;
    regionId?: number;
    regionCode?: string;
    /** `host:port` of the STUN listener; null turns STUN off. */
    stunListenAddr?: string | null;
  };
  logLevel?: "trace" | "debug" | "info" | "warn" | "error";
  /** More top-level YAML (sections not written here: dns, node, tuning, policy…). */
  extra?: string[];
}

export function serverConfigYaml(o: ServerConfigOptions): string {
  const derp = o.derp ?? {};
  const lines = [
    `server_url: ${o.serverUrl}`,
    `listen_addr: ${o.listenAddr}`,
    // Tests run servers side by side: no fixed metrics port (tests/server_metrics_test.ts covers it).
    `metrics_listen_addr: ""`,
    ...(o.tls ? [`tls_cert_path: ${o.tls.certPath}`, `tls_key_path: ${o.tls.keyPath}`] : []),
    `noise:`,
    `  private_key_path: ${o.dir}/noise_private.key`,
    `database:`,
    ...(o.postgres
      ? [
        `  type: postgres`,
        `  postgres:`,
        `    host: ${o.postgres.host}`,
        `    port: ${o.postgres.port}`,
        `    name: ${o.postgres.name}`,
        `    user: ${o.postgres.user}`,
        `    pass: ${o.postgres.pass}`,
      ]
      : [`  type: sqlite`, `  sqlite:`, `    path: ${o.dir}/db.sqlite`]),
    `unix_socket: ${o.dir}/headscale.sock`,
    `derp:`,
    `  server:`,
    `    enabled: ${derp.enabled ?? true}`,
    ...(derp.verifyClients === undefined ? [] : [`    verify_clients: ${derp.verifyClients}`]),
    ...(derp.regionId === undefined ? [] : [`    region_id: ${derp.regionId}`]),
    ...(derp.regionCode === undefined ? [] : [`    region_code: ${derp.regionCode}`]),
    `    private_key_path: ${o.dir}/derp_private.key`,
    ...(derp.stunListenAddr === null
      ? [`    stun:`, `      enabled: false`]
      : derp.stunListenAddr === undefined
      ? []
      : [`    stun_listen_addr: ${derp.stunListenAddr}`]),
    `log:`,
    `  level: ${o.logLevel ?? "debug"}`,
    ...(o.extra ?? []),
  ];
  return lines.join("\n") + "\n";
}

/** A free TCP port on `host` (the kernel picks one; it stays free for a moment). */
export function freeTcpPort(host = "127.0.0.1"): number {
  const listener = Deno.listen({ hostname: host, port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

/** A free UDP port on `host` (for the embedded STUN server). */
export async function freeUdpPort(host = "127.0.0.1"): Promise<number> {
  const socket = createSocket("udp4");
  await new Promise<void>((resolve, reject) => {
    socket.once("error", reject);
    socket.bind(0, host, () => resolve());
  });
  const { port } = socket.address();
  await new Promise<void>((resolve) => socket.close(() => resolve()));
  return port;
}
