/**
 * The embedded DERP relay and STUN server with real Tailscale clients: our server on an https
 * server_url (a throwaway CA the clients trust through SSL_CERT_FILE), two clients whose
 * namespaces drop every UDP packet between them (nftables), so the only path is our relay.
 *
 * Proves: pings and WireGuard traffic go "via DERP(headscale)"; the DERP map the clients got
 * names our region, host and ports; `tailscale netcheck` finds our STUN server; with
 * verify_clients on, the relay refuses an unknown node key and /verify answers for known ones;
 * hostile connections before admission (idle sockets, truncated, oversized and unknown frames,
 * a client that never sends its ClientInfo) neither stop the server nor the relayed traffic.
 */
import assert from "node:assert/strict";
import net from "node:net";
import tls from "node:tls";
import { fileURLToPath } from "node:url";
import { DerpClient, openDerpStream } from "../lib/derp/client.ts";
import { FrameType } from "../lib/derp/frame.ts";
import {
  type Harness,
  integrationSkipReason,
  runCommand,
  type TailscaleClient,
  waitFor,
  withHarness,
} from "./harness.ts";
import { freeUdpPort, serverConfigYaml } from "./support/server_config.ts";
import { ManagedProcess } from "./harness/command.ts";
import {
  createTestCa,
  issueServerCertificate,
  opensslAvailable,
  type TestCa,
} from "./support/tls.ts";

const REPO_ROOT = fileURLToPath(new URL("../", import.meta.url));
const REGION_ID = 999;
const REGION_CODE = "headscale";
const DENO_FLAGS = ["--allow-net", "--allow-read", "--allow-write", "--allow-env", "--allow-sys"];

async function skipReason(): Promise<string | undefined> {
  const base = await integrationSkipReason();
  if (base) return base;
  if (!(await opensslAvailable())) return "the DERP tests need the openssl CLI";
  const nft = await runCommand(["nft", "--version"]).catch(() => undefined);
  if (!nft?.success) {
    return "the DERP relay test needs nftables (`nft`): apt-get install -y nftables";
  }
  return undefined;
}

const skip = await skipReason();
if (skip) console.log(`skipped: ${skip}`);

/** Our server with TLS on the bridge address: its URLs, CA and admin CLI. */
interface HttpsServer {
  /** `https://<bridge>:<port>`. */
  url: string;
  host: string;
  port: number;
  stunPort: number;
  ca: TestCa;
  /** A Deno HTTP client that trusts the CA. */
  http: Deno.HttpClient;
  process: ManagedProcess;
  cli<T>(args: readonly string[]): Promise<T>;
  stop(): Promise<void>;
}

async function startHttpsServer(h: Harness): Promise<HttpsServer> {
  const dir = `${h.workDir}/server`;
  await Deno.mkdir(dir, { recursive: true });
  const ca = await createTestCa(`${h.workDir}/tls`);
  const cert = await issueServerCertificate(ca, { ipAddresses: [h.bridgeAddress] });
  const listen = h.listenAddress();
  const stunPort = await freeUdpPort(listen.host);
  const url = `https://${listen.hostPort}`;
  const configPath = `${dir}/config.yaml`;
  await Deno.writeTextFile(
    configPath,
    serverConfigYaml({
      dir,
      serverUrl: url,
      listenAddr: listen.hostPort,
      tls: { certPath: cert.certPath, keyPath: cert.keyPath },
      derp: {
        regionId: REGION_ID,
        regionCode: REGION_CODE,
        verifyClients: true,
        stunListenAddr: `${listen.host}:${stunPort}`,
      },
      extra: [
        `dns:`,
        `  magic_dns: true`,
        `  base_domain: tailnet.internal`,
        `tuning:`,
        `  batch_change_delay: 50ms`,
      ],
    }),
  );
  const process = await ManagedProcess.spawn(
    [Deno.execPath(), "run", ...DENO_FLAGS, `${REPO_ROOT}main.ts`, "-c", configPath],
    { cwd: dir, logPath: `${h.artifactsDir}/server.log`, dieWithParent: h.dieWithParent },
  );
  const http = Deno.createHttpClient({ caCerts: [ca.certPem] });
  const stop = async () => {
    await process.stop();
    http.close();
  };
  try {
    // The health check also proves the certificate chain: Deno trusts only our CA here.
    await waitFor(
      async () => {
        if (!process.running) throw new Error(`server exited: ${JSON.stringify(process.status)}`);
        const res = await fetch(`${url}/health`, {
          client: http,
          signal: AbortSignal.timeout(2_000),
        });
        await res.body?.cancel();
        return res.status === 200 ? true : undefined;
      },
      60_000,
      { description: `server health at ${url}/health`, intervalMs: 200 },
    );
  } catch (error) {
    await stop();
    throw error;
  }
  const cli = async <T>(args: readonly string[]): Promise<T> => {
    const result = await runCommand(
      [
        Deno.execPath(),
        "run",
        ...DENO_FLAGS,
        `${REPO_ROOT}cli.ts`,
        "-c",
        configPath,
        ...args,
        "-o",
        "json",
        "--force",
      ],
      { cwd: dir, timeoutMs: 30_000 },
    );
    if (!result.success) throw new Error(`cli ${args.join(" ")}: ${result.stderr}${result.stdout}`);
    return JSON.parse(result.stdout) as T;
  };
  return { url, host: listen.host, port: listen.port, stunPort, ca, http, process, cli, stop };
}

const NFT_TABLE = "hsd_no_peer_udp";

/**
 * Drops UDP between this client's namespace and every other address of the test subnet except
 * the bridge (the server's STUN port stays reachable), in both directions, and all IPv6 UDP.
 */
async function blockPeerUdp(client: TailscaleClient, h: Harness): Promise<void> {
  const subnet = h.network.subnet;
  const bridge = h.bridgeAddress;
  const rules = `
table inet ${NFT_TABLE} {
  chain output {
    type filter hook output priority filter; policy accept;
    meta l4proto udp ip daddr ${bridge} accept
    meta l4proto udp ip daddr ${subnet} counter drop
    meta nfproto ipv6 meta l4proto udp counter drop
  }
  chain input {
    type filter hook input priority filter; policy accept;
    meta l4proto udp ip saddr ${bridge} accept
    meta l4proto udp ip saddr ${subnet} counter drop
    meta nfproto ipv6 meta l4proto udp counter drop
  }
}
`;
  const result = await client.exec(["nft", "-f", "-"], { stdin: rules });
  if (!result.success) throw new Error(`nft in ${client.name}: ${result.stderr}`);
}

/** Packets the UDP block dropped in a client's namespace (both directions, v4 and v6). */
async function droppedUdpPackets(client: TailscaleClient): Promise<number> {
  const result = await client.exec(["nft", "list", "table", "inet", NFT_TABLE]);
  if (!result.success) throw new Error(`nft list in ${client.name}: ${result.stderr}`);
  return [...result.stdout.matchAll(/counter packets (\d+)/g)]
    .reduce((sum, m) => sum + Number(m[1]), 0);
}

interface DerpMapJson {
  Regions: Record<string, {
    RegionID: number;
    RegionCode: string;
    Nodes: { HostName: string; DERPPort?: number; STUNPort?: number }[];
  }>;
}

async function ipv4Of(client: TailscaleClient): Promise<string> {
  const ip = (await client.ips()).find((a) => !a.includes(":"));
  assert.ok(ip, `${client.name} has no IPv4 Tailscale address`);
  return ip;
}

/** `tailscale ping` until one pong comes back; returns its path. */
function firstPong(from: TailscaleClient, target: string): Promise<string> {
  return waitFor(
    async () => {
      const r = await from.ping(target, { timeoutMs: 5_000 });
      if (!r.pong || !r.via) throw new Error(r.output);
      return r.via;
    },
    45_000,
    { description: `${from.name}: a pong from ${target}`, intervalMs: 500 },
  );
}

async function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
  });
  try {
    return await Promise.race([p, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** A connection the server is expected to close, and whether it did. */
interface Watched {
  what: string;
  closed: boolean;
  done: Promise<void>;
}

function watchClose(what: string, stream: { once(e: "close", f: () => void): unknown }): Watched {
  const w: Watched = { what, closed: false, done: Promise.resolve() };
  w.done = new Promise((resolve) =>
    stream.once("close", () => {
      w.closed = true;
      resolve();
    })
  );
  return w;
}

function frameHeader(type: number, len: number, body = new Uint8Array(0)): Uint8Array {
  const b = new Uint8Array(5 + body.length);
  b[0] = type;
  new DataView(b.buffer).setUint32(1, len);
  b.set(body, 5);
  return b;
}

/**
 * Connections that misbehave before admission: `idle` TLS connections that never send a request,
 * and DERP connections that never send ClientInfo, send a truncated or an oversized one, or an
 * unknown frame instead, plus non-TLS garbage. All but the idle ones must be closed by the server.
 */
async function hostileConnections(server: HttpsServer, idle: number): Promise<{
  idleSockets: tls.TLSSocket[];
  watched: Watched[];
}> {
  const idleSockets: tls.TLSSocket[] = [];
  for (let batch = 0; batch < idle / 100; batch++) {
    idleSockets.push(
      ...await Promise.all(
        Array.from({ length: 100 }, () =>
          new Promise<tls.TLSSocket>((resolve, reject) => {
            const s = tls.connect({ host: server.host, port: server.port, ca: server.ca.certPem });
            s.once("secureConnect", () => resolve(s));
            s.once("error", reject);
          })),
      ),
    );
  }
  const watched: Watched[] = [];
  const upgraded = async (what: string, write?: Uint8Array) => {
    const { stream } = await openDerpStream(`${server.url}/derp`, { ca: server.ca.certPem });
    stream.on("error", () => {});
    stream.resume();
    watched.push(watchClose(what, stream));
    if (write) stream.write(write);
  };
  await upgraded("never sends ClientInfo");
  await upgraded(
    "truncated ClientInfo (200 bytes promised, 10 sent)",
    frameHeader(FrameType.ClientInfo, 200, new Uint8Array(10)),
  );
  await upgraded("oversized ClientInfo (16 MiB)", frameHeader(FrameType.ClientInfo, 16 << 20));
  await upgraded("unknown frame type first", frameHeader(0x7e, 4, new Uint8Array(4)));
  const raw = net.connect({ host: server.host, port: server.port });
  raw.on("error", () => {});
  raw.resume();
  watched.push(watchClose("non-TLS garbage", raw));
  raw.write(new Uint8Array(64).fill(0xff));
  return { idleSockets, watched };
}

Deno.test(
  {
    name: "derp: two clients without a UDP path relay through our DERP over TLS; STUN; admission",
    ignore: skip !== undefined,
  },
  () =>
    withHarness({ name: "derp-relay" }, async (h) => {
      const server = await startHttpsServer(h);
      const idle: tls.TLSSocket[] = [];
      try {
        await server.cli(["users", "create", "derp"]);
        const { key } = await server.cli<{ key: string }>(
          ["preauthkeys", "create", "--user", "derp", "--reusable", "--expiration", "1h"],
        );
        const env = { SSL_CERT_FILE: server.ca.certPath };
        const [a, b] = await h.addClients(["derp-a", "derp-b"], { env });
        await Promise.all([a, b].map((c) => blockPeerUdp(c, h)));
        await Promise.all(
          [a, b].map((c) => c.up({ loginServer: server.url, authKey: key, timeoutMs: 60_000 })),
        );
        await Promise.all([a, b].map((c) => c.waitForPeers(1, 30_000, { online: true })));

        // The DERP map the clients got: our region, on server_url's host and port, with STUN.
        const map = JSON.parse(
          await a.cliChecked(["debug", "derp-map"], { timeoutMs: 15_000 }),
        ) as DerpMapJson;
        const region = map.Regions[String(REGION_ID)];
        assert.ok(region, `region ${REGION_ID} in ${JSON.stringify(map)}`);
        assert.equal(region.RegionCode, REGION_CODE);
        assert.deepEqual(
          {
            host: region.Nodes[0]?.HostName,
            derp: region.Nodes[0]?.DERPPort,
            stun: region.Nodes[0]?.STUNPort,
          },
          { host: server.host, derp: server.port, stun: server.stunPort },
        );

        // Relayed disco pings both ways; --until-direct keeps trying for a direct path, which the
        // UDP block never lets it find.
        const [aIp, bIp] = await Promise.all([ipv4Of(a), ipv4Of(b)]);
        assert.equal(await firstPong(a, bIp), `DERP(${REGION_CODE})`);
        assert.equal(await firstPong(b, aIp), `DERP(${REGION_CODE})`);
        const repeated = await a.ping(bIp, { count: 3, untilDirect: true, timeoutMs: 5_000 });
        const paths = [...repeated.output.matchAll(/^pong from .* via (\S+) in /gm)].map((m) =>
          m[1]
        );
        assert.ok(paths.length >= 2, `several pongs: ${repeated.output}`);
        assert.deepEqual(
          [...new Set(paths)],
          [`DERP(${REGION_CODE})`],
          `every pong via our relay: ${repeated.output}`,
        );
        // WireGuard traffic (TSMP ping) also gets through, necessarily over the relay.
        const tsmp = await a.ping(bIp, { type: "tsmp", timeoutMs: 5_000 });
        assert.ok(tsmp.pong, `TSMP pong: ${tsmp.output}`);
        const peer = Object.values((await a.status()).Peer ?? {})[0];
        assert.equal(peer?.CurAddr, "", `no direct address in use: ${JSON.stringify(peer)}`);
        assert.equal(peer?.Relay, REGION_CODE);
        // The clients did try direct UDP: the block is what kept them on DERP.
        assert.ok((await droppedUdpPackets(a)) > 0, "no UDP packet hit the block in derp-a");

        // netcheck from inside a's namespace finds our STUN server and our region's latency.
        const report = await a.netcheck();
        assert.equal(report.UDP, true, `netcheck UDP: ${JSON.stringify(report)}`);
        assert.equal(report.PreferredDERP, REGION_ID, JSON.stringify(report));
        const latency = report.RegionLatency?.[String(REGION_ID)] ?? 0;
        assert.ok(latency > 0, `a latency for region ${REGION_ID}: ${JSON.stringify(report)}`);
        assert.ok(report.GlobalV4?.startsWith(`${a.address}:`), `GlobalV4 ${report.GlobalV4}`);

        // Admission: an unknown node key is refused before ServerInfo...
        const stranger = await DerpClient.connect({
          url: `${server.url}/derp`,
          ca: server.ca.certPem,
        });
        await stranger.closed;
        await assert.rejects(stranger.recv(100), "the stranger got no ServerInfo");
        // ...and /verify (derper's admission protocol) admits exactly the registered nodes.
        const verify = async (nodeKey: string) => {
          const res = await fetch(`${server.url}/verify`, {
            method: "POST",
            client: server.http,
            body: JSON.stringify({ NodePublic: nodeKey, Source: a.address }),
          });
          assert.equal(res.status, 200);
          return ((await res.json()) as { Allow: boolean }).Allow;
        };
        const aKey = (await a.status()).Self?.PublicKey ?? "";
        assert.ok(aKey.startsWith("nodekey:"), `a's node key: ${aKey}`);
        assert.equal(await verify(aKey), true, "a registered node is admitted");
        assert.equal(await verify(stranger.nodeKey), false, "an unknown node is refused");

        // Hostile connections before admission: the relay keeps working while they sit there.
        const hostile = await hostileConnections(server, 500);
        idle.push(...hostile.idleSockets);
        assert.equal(await firstPong(b, aIp), `DERP(${REGION_CODE})`);
        assert.ok((await a.ping(bIp, { type: "tsmp", timeoutMs: 5_000 })).pong);
        // Every misbehaving DERP connection is closed (the silent one at the 10 s deadline).
        await withTimeout(Promise.all(hostile.watched.map((w) => w.done)), 20_000, "")
          .catch(() => {
            const open = hostile.watched.filter((w) => !w.closed).map((w) => w.what);
            throw new Error(`the server left these connections open: ${open.join("; ")}`);
          });
        assert.ok(server.process.running, "the server is still running");
        assert.equal(await firstPong(a, bIp), `DERP(${REGION_CODE})`);
      } finally {
        for (const s of idle) s.destroy();
        await server.stop();
      }
    }),
);
