/**
 * TCP services "inside" a tailnet node and connections to them through another node, for tests
 * of what the policy lets through.
 *
 * With `--tun=userspace-networking`, tailscaled's netstack takes an inbound TCP connection to the
 * node's own Tailscale IP (after the packet filter let its SYN in) and dials `127.0.0.1:<port>` in
 * the node's network namespace: nothing there means a RST, a listener there serves the peer. So a
 * plain HTTP server on the namespace's loopback is the node's service, and the peer reaches it
 * through its own tailscaled's SOCKS5 proxy (`curl --socks5-hostname`).
 *
 * ```ts
 * const web = await serveHttp(h, b, [80, 22]);  // answers "node-b:80" / "node-b:22"
 * const probe = await probeHttp(a, bIp, 80);     // { connected: true, body: "node-b:80", … }
 * await web.stop();
 * ```
 *
 * Where a connection died: {@link aclDrops} counts the packets the target's filter dropped.
 */
import {
  type Harness,
  type NetworkBehind,
  runCommand,
  type TailscaleClient,
  waitFor,
} from "../harness.ts";
import { ManagedProcess, tailOfFile } from "../harness/command.ts";

/** HTTP servers on a node's loopback, one process for all its ports. */
export interface NodeHttpServer {
  readonly ports: readonly number[];
  /** Stops the server process (call before the harness closes: namespaces go away then). */
  stop(): Promise<void>;
}

/** What a connection attempt from one node to another node's port gave. */
export interface HttpProbe {
  /** An HTTP response came back (the TCP connection was opened end to end). */
  connected: boolean;
  /** The response body (each server answers `<node>:<port>`). */
  body: string;
  /** curl's exit code: 0 ok, 7 refused, 28 timed out, 97 SOCKS5 failure. */
  exitCode: number;
  /** curl's own message on failure. */
  error: string;
}

/**
 * Starts a server on `127.0.0.1:<port>` for each port inside `client`'s namespace, answering
 * every request with `<client name>:<port>`; resolves once each port answers locally. Its output
 * goes to `<artifacts>/<client>.http.log`.
 */
export async function serveHttp(
  harness: Harness,
  client: TailscaleClient,
  ports: readonly number[],
): Promise<NodeHttpServer> {
  const script = [
    `const name = ${JSON.stringify(client.name)};`,
    `for (const port of ${JSON.stringify(ports)}) {`,
    `  Deno.serve({ hostname: "127.0.0.1", port, onListen() {} },`,
    `    () => new Response(name + ":" + port + "\\n"));`,
    `}`,
  ].join("\n");
  const logPath = `${harness.artifactsDir}/${client.name}.http.log`;
  const process = await ManagedProcess.spawn(
    ["ip", "netns", "exec", client.namespace.name, Deno.execPath(), "eval", script],
    { logPath, dieWithParent: harness.dieWithParent },
  );
  try {
    for (const port of ports) {
      await waitFor(
        async () => {
          if (!process.running) {
            throw new Error(`the HTTP server exited:\n${await tailOfFile(logPath)}`);
          }
          const local = await client.exec(
            ["curl", "-sS", "--max-time", "2", `http://127.0.0.1:${port}/`],
            { timeoutMs: 5_000 },
          );
          return local.success && local.stdout.trim() === `${client.name}:${port}`;
        },
        15_000,
        { description: `${client.name}: HTTP server on 127.0.0.1:${port}`, intervalMs: 100 },
      );
    }
  } catch (error) {
    await process.stop();
    throw error;
  }
  return {
    ports,
    stop: async () => {
      await process.stop();
    },
  };
}

/**
 * An HTTP server on `<net's host>:<port>` in a namespace behind a node (a LAN behind a subnet
 * router, an "internet" behind an exit node) answering every request with `body`; resolves once
 * it answers there. Stopped when the harness closes. Output: `<artifacts>/<namespace>.http.log`.
 */
export async function serveHttpBehind(
  harness: Harness,
  net: NetworkBehind,
  port: number,
  body: string,
): Promise<void> {
  const ns = net.namespace;
  const script = [
    `Deno.serve({ hostname: ${JSON.stringify(ns.address)}, port: ${port}, onListen() {} },`,
    `  () => new Response(${JSON.stringify(body + "\n")}));`,
  ].join("\n");
  const logPath = `${harness.artifactsDir}/${ns.name}.http.log`;
  const process = await ManagedProcess.spawn(
    ["ip", "netns", "exec", ns.name, Deno.execPath(), "eval", script],
    { logPath, dieWithParent: harness.dieWithParent },
  );
  harness.onClose(() => process.stop());
  const url = `http://${ns.address}:${port}/`;
  await waitFor(
    async () => {
      if (!process.running) {
        throw new Error(`the HTTP server exited:\n${await tailOfFile(logPath)}`);
      }
      const local = await runCommand(
        ["ip", "netns", "exec", ns.name, "curl", "-sS", "--max-time", "2", url],
        { timeoutMs: 5_000 },
      );
      return local.success && local.stdout.trim() === body;
    },
    15_000,
    { description: `HTTP server on ${url} in ${ns.name}`, intervalMs: 100 },
  );
}

/**
 * One HTTP request from `from` to `ip:port` over the tailnet (through `from`'s SOCKS5 proxy).
 * curl gives up after `connectTimeoutMs` without a connection, so a dropped SYN is a failure in
 * bounded time, never a hang. Never throws for a failed connection; see `connected`.
 */
export async function probeHttp(
  from: TailscaleClient,
  ip: string,
  port: number,
  connectTimeoutMs = 3_000,
): Promise<HttpProbe> {
  const seconds = (connectTimeoutMs / 1000).toFixed(1);
  const host = ip.includes(":") ? `[${ip}]` : ip;
  const result = await from.exec([
    "curl",
    "-sS",
    "--socks5-hostname",
    from.socks5Address,
    "--connect-timeout",
    seconds,
    "--max-time",
    (connectTimeoutMs / 1000 + 5).toFixed(1),
    `http://${host}:${port}/`,
  ], { timeoutMs: connectTimeoutMs + 15_000 });
  if (result.timedOut) {
    throw new Error(`${from.name}: curl to ${ip}:${port} hung past its own time limits`);
  }
  return {
    connected: result.success,
    body: result.stdout.trim(),
    exitCode: result.code,
    error: result.stderr.trim(),
  };
}

/**
 * How many inbound packets `client`'s packet filter has dropped (tailscaled's user metric
 * `tailscaled_inbound_dropped_packets_total{reason="acl"}`, from `tailscale metrics print`).
 */
export async function aclDrops(client: TailscaleClient): Promise<number> {
  const out = await client.cliChecked(["metrics", "print"], { timeoutMs: 15_000 });
  const m = /^tailscaled_inbound_dropped_packets_total\{reason="acl"\} (\d+)$/m.exec(out);
  return m ? Number(m[1]) : 0; // The counter appears with the first drop.
}
