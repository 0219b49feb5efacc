/**
 * What the control-protocol tests check across several clients: everyone registered, everyone
 * sees everyone with the addresses and names the API reports, and every pair pings.
 */
import assert from "node:assert/strict";
import {
  peersOf,
  type PeerStatus,
  type TailscaleClient,
  type TailscaleStatus,
  waitFor,
} from "../harness.ts";
import type { ApiNode, ControlServer } from "./control_server.ts";

/** `tailscale up` on every client at once with the same key (hostname = client name). */
export async function upAll(
  server: ControlServer,
  clients: readonly TailscaleClient[],
  authKey: string,
): Promise<void> {
  await Promise.all(clients.map((c) => c.up({ loginServer: server.url, authKey })));
}

/** The peer whose HostName is `hostname`, if the status lists one. */
export function peerByHostName(status: TailscaleStatus, hostname: string): PeerStatus | undefined {
  return peersOf(status).find((p) => p.HostName === hostname);
}

function sortedIps(ips: readonly string[] | null | undefined): string[] {
  return [...(ips ?? [])].sort();
}

/**
 * Waits until `client`'s status satisfies `check` (which throws or returns false while it does
 * not yet); returns that status.
 */
export function waitForStatus(
  client: TailscaleClient,
  check: (status: TailscaleStatus) => boolean | void,
  description: string,
  timeoutMs = 30_000,
): Promise<TailscaleStatus> {
  return waitFor(
    async () => {
      const status = await client.status();
      return check(status) === false ? undefined : status;
    },
    timeoutMs,
    { description: `${client.name}: ${description}` },
  );
}

/** Waits until `client` lists no peer with HostName `hostname`. */
export function waitForPeerGone(
  client: TailscaleClient,
  hostname: string,
  timeoutMs = 30_000,
): Promise<TailscaleStatus> {
  return waitForStatus(
    client,
    (status) => peerByHostName(status, hostname) === undefined,
    `${hostname} gone from the peers`,
    timeoutMs,
  );
}

/** Asserts that `status` shows `node` as a peer with the API's addresses and names. */
export function assertPeerMatchesApi(
  server: ControlServer,
  status: TailscaleStatus,
  node: ApiNode,
  viewer: string,
): PeerStatus {
  const peer = peerByHostName(status, node.name);
  assert.ok(peer, `${viewer} does not list ${node.name} as a peer`);
  assert.deepEqual(
    sortedIps(peer.TailscaleIPs),
    sortedIps(node.ipAddresses),
    `${viewer}'s view of ${node.name}: TailscaleIPs`,
  );
  assert.equal(peer.DNSName, server.dnsName(node), `${viewer}'s view of ${node.name}: DNSName`);
  return peer;
}

/**
 * Waits until every client sees every other one online, then checks each client's own
 * addresses and its view of every peer against the API's node list. Returns that list.
 */
export async function assertMesh(
  server: ControlServer,
  clients: readonly TailscaleClient[],
  timeoutMs = 60_000,
): Promise<ApiNode[]> {
  const statuses = await Promise.all(
    clients.map((c) => c.waitForPeers(clients.length - 1, timeoutMs, { online: true })),
  );
  const nodes = await server.listNodes();
  const byHost = new Map(nodes.map((n) => [n.name, n]));
  clients.forEach((client, i) => {
    const status = statuses[i];
    const self = byHost.get(client.name);
    assert.ok(self, `the API lists no node ${client.name}: ${[...byHost.keys()].join(", ")}`);
    assert.equal(status.BackendState, "Running", `${client.name} BackendState`);
    assert.deepEqual(
      sortedIps(status.TailscaleIPs),
      sortedIps(self.ipAddresses),
      `${client.name}: own TailscaleIPs`,
    );
    assert.equal(status.Self?.DNSName, server.dnsName(self), `${client.name}: own DNSName`);
    for (const other of clients) {
      if (other === client) continue;
      const node = byHost.get(other.name);
      assert.ok(node, `the API lists no node ${other.name}`);
      const peer = assertPeerMatchesApi(server, status, node, client.name);
      assert.equal(peer.Online, true, `${client.name}'s view of ${other.name}: Online`);
    }
  });
  return nodes;
}

/** The IPv4 Tailscale address of a client, from `tailscale ip`. */
export async function ipv4Of(client: TailscaleClient): Promise<string> {
  const ip = (await client.ips()).find((a) => !a.includes(":"));
  assert.ok(ip, `${client.name} has no IPv4 Tailscale address`);
  return ip;
}

/**
 * `tailscale ping` from `from` to `to` until a pong comes back (the first disco ping may be
 * spent finding a path). Throws with the last output if none does in time.
 */
export async function assertPings(
  from: TailscaleClient,
  to: TailscaleClient,
  timeoutMs = 30_000,
): Promise<void> {
  const target = await ipv4Of(to);
  await waitFor(
    async () => {
      const result = await from.ping(target, { timeoutMs: 5_000 });
      if (!result.pong) throw new Error(result.output);
      return true;
    },
    timeoutMs,
    { description: `${from.name}: a pong from ${to.name} (${target})`, intervalMs: 500 },
  );
}

/** Every client pings every other one (each source's pings run one after another). */
export async function assertAllPairsPing(clients: readonly TailscaleClient[]): Promise<void> {
  await Promise.all(clients.map(async (from) => {
    for (const to of clients) {
      if (to !== from) await assertPings(from, to);
    }
  }));
}

/** The LoginName of the user owning `node` (Self or a peer), from the status's User table. */
export function loginNameOf(status: TailscaleStatus, node: PeerStatus | null): string | undefined {
  if (!node) return undefined;
  return status.User?.[String(node.UserID)]?.LoginName;
}

/** What `tailscale whois --json <ip>` prints (apitype.WhoIsResponse), the parts tests read. */
export interface WhoIs {
  Node: { ID: number; Name: string; User: number; [field: string]: unknown };
  UserProfile: { ID: number; LoginName: string; [field: string]: unknown };
}

/**
 * `tailscale whois` on `client` for a Tailscale IP: the node and owner as the client knows them
 * now. Unlike the User table of `tailscale status`, which clients since v1.102 freeze at the last
 * full netmap, it includes profiles that arrived in deltas.
 */
export async function whois(client: TailscaleClient, ip: string): Promise<WhoIs> {
  const out = await client.cliChecked(["whois", "--json", ip], { timeoutMs: 15_000 });
  try {
    return JSON.parse(out) as WhoIs;
  } catch {
    throw new Error(`${client.name}: tailscale whois --json ${ip} printed ${out.slice(0, 200)}`);
  }
}
