/**
 * The test network: one Linux bridge in the root namespace and one network namespace per client,
 * each joined to the bridge by a veth pair.
 *
 * Addressing: every run takes one /24 out of 172.31.0.0/16 (172.31.N.0/24, N in 1..254). The bridge
 * is 172.31.N.1 (servers listen there) and namespace k gets 172.31.N.(10+k) with a default route
 * via the bridge. The bridge's name `hsdbrN` reserves N: creating it fails if another run holds it.
 *
 * Isolation: a policy rule (`ip rule … iif hsdbrN unreachable`) refuses to route anything that
 * arrives from the bridge, so namespaces reach the bridge address and each other (switched, not
 * routed) but never anything beyond this machine, whatever the host's ip_forward setting.
 *
 * Networks behind a node ({@link TestNetwork.addNetworkBehind}): a namespace joined by a veth pair
 * to one client's namespace only (a "LAN" behind a subnet router, an "internet" behind an exit
 * node). Its /24 is routed nowhere else: other namespaces send it to the bridge, where the rule
 * above refuses it. Those addresses exist only inside the two namespaces, never on the host.
 *
 * Crash safety: the bridge's alias records the owning process (pid and start time); a later run
 * sweeps every `hsd…` bridge, namespace, veth and rule whose owner is gone.
 */
import { runChecked, runCommand } from "./command.ts";

/** The address range the integration tests use, and nothing else. */
export const TEST_SUBNET = "172.31.0.0/16";
const SUBNET_PREFIX = "172.31";
const BRIDGE_PREFIX = "hsdbr";
const NAMESPACE_PREFIX = "hsd";
const VETH_PREFIX = "hsdv";
const ALIAS_TAG = "headscale-deno-it";
const RULE_PRIORITY = 1000;
const FIRST_HOST = 10;
const MAX_NAMESPACES = 240;
/** Where `ip netns exec` finds the files it mounts over /etc for a namespace. */
const NETNS_ETC = "/etc/netns";

/** One client namespace. */
export interface Namespace {
  /** `ip netns` name, e.g. `hsd137-c0`. */
  name: string;
  /** The namespace's address on the bridge, e.g. `172.31.137.10`. */
  address: string;
  /** Interface name inside the namespace. */
  device: "eth0";
  /** Host-side veth name, e.g. `hsdv137c0`; empty for a namespace behind a client's. */
  hostVeth: string;
}

/** A process that owns a run: its pid plus start time, so a reused pid is not mistaken for it. */
interface Owner {
  pid: number;
  startTime: string;
}

/** A namespace reachable only through one client's namespace (see {@link TestNetwork.addNetworkBehind}). */
export interface NetworkBehind {
  /** The namespace behind the gateway; `address` is where its servers listen. */
  namespace: Namespace;
  /** The /24 a route to it names, e.g. `10.77.1.0/24`. */
  subnet: string;
  /** The gateway namespace's address on the link, `<prefix>.1`. */
  gatewayAddress: string;
  /** The gateway namespace's interface on the link, e.g. `lan0`. */
  gatewayDevice: string;
}

export class TestNetwork {
  readonly #namespaces: Namespace[] = [];
  readonly #behind: Namespace[] = [];
  #destroyed = false;

  private constructor(
    /** The third octet N of this run's 172.31.N.0/24. */
    readonly index: number,
  ) {}

  /** Bridge interface name, e.g. `hsdbr137`. */
  get bridge(): string {
    return `${BRIDGE_PREFIX}${this.index}`;
  }

  /** The bridge's address: where servers listen and the namespaces' default gateway. */
  get bridgeAddress(): string {
    return `${SUBNET_PREFIX}.${this.index}.1`;
  }

  /** This run's subnet in CIDR form, e.g. `172.31.137.0/24`. */
  get subnet(): string {
    return `${SUBNET_PREFIX}.${this.index}.0/24`;
  }

  get namespaces(): readonly Namespace[] {
    return this.#namespaces;
  }

  /**
   * Sweeps leftovers of dead runs, reserves a free 172.31.N.0/24 and brings up its bridge.
   * Needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN) and iproute2.
   */
  static async create(): Promise<TestNetwork> {
    await sweepStaleRuns();
    const owner = await currentOwner();
    const taken = await subnetsInUse();
    const start = 1 + Math.floor(Math.random() * 254);
    for (let i = 0; i < 254; i++) {
      const index = ((start - 1 + i) % 254) + 1;
      if (taken.has(index)) continue;
      const network = new TestNetwork(index);
      const created = await runCommand(["ip", "link", "add", network.bridge, "type", "bridge"]);
      if (!created.success) {
        if (created.stderr.includes("exists")) continue; // another run holds this index
        throw new Error(`cannot create bridge ${network.bridge}: ${created.stderr.trim()}`);
      }
      try {
        await network.#configureBridge(owner);
      } catch (error) {
        await network.destroy().catch(() => {});
        throw error;
      }
      return network;
    }
    throw new Error(`no free /24 left in ${TEST_SUBNET} for the test bridge`);
  }

  async #configureBridge(owner: Owner): Promise<void> {
    const ip = (...args: string[]) => runChecked(["ip", ...args]);
    await ip("link", "set", this.bridge, "alias", ownerAlias(owner));
    await ip("addr", "add", `${this.bridgeAddress}/24`, "dev", this.bridge);
    await ip("link", "set", this.bridge, "up");
    await ip(
      "rule",
      "add",
      "priority",
      String(RULE_PRIORITY),
      "iif",
      this.bridge,
      "unreachable",
    );
  }

  /** Creates the next namespace: loopback up, veth on the bridge, address and default route. */
  async addNamespace(): Promise<Namespace> {
    if (this.#destroyed) throw new Error("test network already destroyed");
    const k = this.#namespaces.length;
    if (k >= MAX_NAMESPACES) throw new Error(`at most ${MAX_NAMESPACES} namespaces per run`);
    const ns: Namespace = {
      name: `${NAMESPACE_PREFIX}${this.index}-c${k}`,
      address: `${SUBNET_PREFIX}.${this.index}.${FIRST_HOST + k}`,
      device: "eth0",
      hostVeth: `${VETH_PREFIX}${this.index}c${k}`,
    };
    // Registered before creation so destroy() removes a half-built namespace too.
    this.#namespaces.push(ns);
    const ip = (...args: string[]) => runChecked(["ip", ...args]);
    await ip("netns", "add", ns.name);
    await writeNamespaceEtc(ns.name);
    await ip(
      "link",
      "add",
      ns.hostVeth,
      "type",
      "veth",
      "peer",
      "name",
      ns.device,
      "netns",
      ns.name,
    );
    await ip("link", "set", ns.hostVeth, "master", this.bridge, "up");
    await ip("-n", ns.name, "link", "set", "lo", "up");
    await ip("-n", ns.name, "addr", "add", `${ns.address}/24`, "dev", ns.device);
    await ip("-n", ns.name, "link", "set", ns.device, "up");
    await ip("-n", ns.name, "route", "add", "default", "via", this.bridgeAddress);
    return ns;
  }

  /**
   * A namespace behind `gateway` (a client's namespace), joined to it alone by a veth pair:
   * `<prefix>.1/24` on the gateway's `lan<k>`, `<prefix>.10/24` on the new namespace's `eth0`
   * (default route via the gateway). `prefix` is the first three octets, e.g. `10.77.1`. Only the
   * gateway (and whatever tailscaled there forwards) reaches it. Several gateways may each have
   * a network with the same prefix (HA subnet routers), as they are separate namespaces.
   *
   * With `beyond` (three octets too), the namespace also holds `<beyond>.10` on its loopback and
   * the gateway routes `<beyond>.0/24` through it: a network one hop past the gateway, on none of
   * its interfaces. An exit node needs that: tailscaled leaves the gateway's directly connected
   * LANs out of the exit route ("guest Wi-Fi": they must be advertised as subnets of their own),
   * so a server on its own link would be refused by its filter.
   */
  async addNetworkBehind(
    gateway: Namespace,
    prefix: string,
    options: { beyond?: string } = {},
  ): Promise<NetworkBehind> {
    if (this.#destroyed) throw new Error("test network already destroyed");
    for (const p of [prefix, options.beyond ?? prefix]) {
      if (!/^\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(p)) {
        throw new Error(`prefixes are three octets, e.g. 10.77.1, got ${JSON.stringify(p)}`);
      }
      if (`${p}.0/24` === this.subnet) throw new Error(`${p}.0/24 is the bridge's subnet`);
    }
    const k = this.#behind.length;
    const routed = options.beyond ?? prefix;
    const ns: Namespace = {
      name: `${NAMESPACE_PREFIX}${this.index}-l${k}`,
      address: `${routed}.10`,
      device: "eth0",
      hostVeth: "",
    };
    this.#behind.push(ns);
    const gatewayDevice = `lan${k}`;
    const gatewayAddress = `${prefix}.1`;
    const ip = (...args: string[]) => runChecked(["ip", ...args]);
    await ip("netns", "add", ns.name);
    await writeNamespaceEtc(ns.name);
    await ip(
      "-n",
      gateway.name,
      "link",
      "add",
      gatewayDevice,
      "type",
      "veth",
      "peer",
      "name",
      ns.device,
      "netns",
      ns.name,
    );
    await ip("-n", gateway.name, "addr", "add", `${gatewayAddress}/24`, "dev", gatewayDevice);
    await ip("-n", gateway.name, "link", "set", gatewayDevice, "up");
    await ip("-n", ns.name, "link", "set", "lo", "up");
    await ip("-n", ns.name, "addr", "add", `${prefix}.10/24`, "dev", ns.device);
    await ip("-n", ns.name, "link", "set", ns.device, "up");
    await ip("-n", ns.name, "route", "add", "default", "via", gatewayAddress);
    if (options.beyond) {
      await ip("-n", ns.name, "addr", "add", `${ns.address}/32`, "dev", "lo");
      await ip("-n", gateway.name, "route", "add", `${routed}.0/24`, "via", `${prefix}.10`);
    }
    return { namespace: ns, subnet: `${routed}.0/24`, gatewayAddress, gatewayDevice };
  }

  /** `argv` prefixed so that it runs inside namespace `ns`. */
  execArgv(ns: Namespace | string, argv: readonly string[]): string[] {
    return ["ip", "netns", "exec", typeof ns === "string" ? ns : ns.name, ...argv];
  }

  /**
   * Removes everything this run created: kills what still runs in its namespaces, deletes veths,
   * namespaces, the routing rule and the bridge. Best effort; returns what could not be removed.
   */
  async destroy(): Promise<string[]> {
    this.#destroyed = true;
    const problems: string[] = [];
    await Promise.all([...this.#namespaces, ...this.#behind].map(async (ns) => {
      problems.push(...await removeNamespace(ns.name, ns.hostVeth || undefined));
    }));
    problems.push(...await removeBridge(this.index));
    return problems;
  }
}

/**
 * Removes bridges, namespaces, veths and rules left by earlier runs whose owning process is gone.
 * Returns the names it removed.
 */
export async function sweepStaleRuns(): Promise<string[]> {
  const live = new Set<number>();
  const stale = new Set<number>();
  for (const link of await listLinks("bridge")) {
    const index = indexOf(link.ifname, new RegExp(`^${BRIDGE_PREFIX}(\\d+)$`));
    if (index === undefined) continue;
    const owner = parseOwnerAlias(link.ifalias);
    // No alias yet: a run is between creating and labelling its bridge. Leave it alone.
    if (owner === undefined || await isAlive(owner)) live.add(index);
    else stale.add(index);
  }
  const removed: string[] = [];
  const isStale = (index: number | undefined) =>
    index !== undefined && (stale.has(index) || !live.has(index));

  // Veths first: deleting a namespace frees its end of the pair only asynchronously.
  for (const link of await listLinks("veth")) {
    const index = indexOf(link.ifname, new RegExp(`^${VETH_PREFIX}(\\d+)c\\d+$`));
    if (!isStale(index)) continue;
    await runCommand(["ip", "link", "del", link.ifname]);
    removed.push(`link ${link.ifname}`);
  }
  for (const name of await listNamespaces()) {
    const index = indexOf(name, new RegExp(`^${NAMESPACE_PREFIX}(\\d+)-`));
    if (!isStale(index)) continue;
    await removeNamespace(name);
    removed.push(`netns ${name}`);
  }
  for (const name of await listNamespaceEtcDirs()) {
    const index = indexOf(name, new RegExp(`^${NAMESPACE_PREFIX}(\\d+)-`));
    if (!isStale(index)) continue;
    await Deno.remove(`${NETNS_ETC}/${name}`, { recursive: true }).catch(() => {});
    removed.push(`${NETNS_ETC}/${name}`);
  }
  for (const rule of await listRules()) {
    const index = indexOf(rule.iif ?? "", new RegExp(`^${BRIDGE_PREFIX}(\\d+)$`));
    if (rule.priority !== RULE_PRIORITY || !isStale(index)) continue;
    await deleteRule(rule.iif!);
    removed.push(`rule iif ${rule.iif}`);
  }
  for (const index of stale) {
    await runCommand(["ip", "link", "del", `${BRIDGE_PREFIX}${index}`]);
    removed.push(`bridge ${BRIDGE_PREFIX}${index}`);
  }
  return removed;
}

/** Names of all `hsd…` bridges, namespaces and veths present now (used to check cleanup). */
export async function listHarnessInterfaces(): Promise<string[]> {
  const links = [...await listLinks("bridge"), ...await listLinks("veth")]
    .map((l) => l.ifname)
    .filter((name) => name.startsWith(BRIDGE_PREFIX) || name.startsWith(VETH_PREFIX));
  const namespaces = (await listNamespaces()).filter((n) =>
    new RegExp(`^${NAMESPACE_PREFIX}\\d+-`).test(n)
  );
  const etc = (await listNamespaceEtcDirs()).filter((n) =>
    new RegExp(`^${NAMESPACE_PREFIX}\\d+-`).test(n)
  );
  return [
    ...links,
    ...namespaces.map((n) => `netns ${n}`),
    ...etc.map((n) => `${NETNS_ETC}/${n}`),
  ];
}

/**
 * The files `ip netns exec` mounts over /etc for namespace `name`: a resolv.conf pointing at the
 * namespace's own loopback, so a DNS lookup fails at once instead of waiting on the host's
 * resolver (tailscaled looked up "localhost" that way and exited when the answer took 10 s).
 */
async function writeNamespaceEtc(name: string): Promise<void> {
  await Deno.mkdir(`${NETNS_ETC}/${name}`, { recursive: true });
  await Deno.writeTextFile(
    `${NETNS_ETC}/${name}/resolv.conf`,
    "# headscale-deno integration namespace: no DNS beyond it\nnameserver 127.0.0.1\n",
  );
}

async function listNamespaceEtcDirs(): Promise<string[]> {
  const names: string[] = [];
  try {
    for await (const entry of Deno.readDir(NETNS_ETC)) {
      if (entry.isDirectory) names.push(entry.name);
    }
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  return names;
}

async function removeNamespace(name: string, hostVeth?: string): Promise<string[]> {
  const problems: string[] = [];
  const pids = await runCommand(["ip", "netns", "pids", name]);
  for (const pid of pids.stdout.split(/\s+/).filter((p) => /^\d+$/.test(p))) {
    try {
      Deno.kill(Number(pid), "SIGKILL");
    } catch {
      // Gone already.
    }
  }
  if (hostVeth) {
    const del = await runCommand(["ip", "link", "del", hostVeth]);
    if (!del.success && !/Cannot find|does not exist/.test(del.stderr)) {
      problems.push(`veth ${hostVeth}: ${del.stderr.trim()}`);
    }
  }
  const del = await runCommand(["ip", "netns", "del", name]);
  if (!del.success && !/No such file/.test(del.stderr)) {
    problems.push(`netns ${name}: ${del.stderr.trim()}`);
  }
  await Deno.remove(`${NETNS_ETC}/${name}`, { recursive: true }).catch((e) => {
    if (!(e instanceof Deno.errors.NotFound)) problems.push(`${NETNS_ETC}/${name}: ${e}`);
  });
  return problems;
}

async function removeBridge(index: number): Promise<string[]> {
  const problems: string[] = [];
  const bridge = `${BRIDGE_PREFIX}${index}`;
  const rule = await deleteRule(bridge);
  if (!rule.success && !/No such file|not exist/.test(rule.stderr)) {
    problems.push(`rule iif ${bridge}: ${rule.stderr.trim()}`);
  }
  const del = await runCommand(["ip", "link", "del", bridge]);
  if (!del.success && !/Cannot find|does not exist/.test(del.stderr)) {
    problems.push(`bridge ${bridge}: ${del.stderr.trim()}`);
  }
  return problems;
}

function deleteRule(iif: string) {
  return runCommand([
    "ip",
    "rule",
    "del",
    "priority",
    String(RULE_PRIORITY),
    "iif",
    iif,
    "unreachable",
  ]);
}

/** Third octets N already routed somewhere in 172.31.0.0/16 on this host (e.g. Docker networks). */
async function subnetsInUse(): Promise<Set<number>> {
  const taken = new Set<number>();
  const out = await runChecked(["ip", "-j", "-4", "route", "show", "table", "all"]);
  for (const route of JSON.parse(out || "[]") as { dst?: string }[]) {
    const match = /^(\d+)\.(\d+)\.(\d+)\.(\d+)(?:\/(\d+))?$/.exec(route.dst ?? "");
    if (!match) continue;
    const [a, b, c] = [Number(match[1]), Number(match[2]), Number(match[3])];
    const length = match[5] === undefined ? 32 : Number(match[5]);
    if (length < 16) {
      // A route wider than our /16 (other than default) that contains it: avoid the whole range.
      const mask = length === 0 ? 0 : (~0 << (32 - length)) >>> 0;
      const ours = ((172 << 24) | (31 << 16)) >>> 0;
      const theirs = ((a << 24) | (b << 16) | (c << 8)) >>> 0;
      if (length > 0 && ((ours & mask) >>> 0) === ((theirs & mask) >>> 0)) {
        for (let n = 1; n <= 254; n++) taken.add(n);
      }
      continue;
    }
    if (a !== 172 || b !== 31) continue;
    if (length >= 24) {
      taken.add(c);
    } else {
      const span = 2 ** (24 - length);
      const first = c - (c % span);
      for (let n = first; n < first + span; n++) taken.add(n);
    }
  }
  return taken;
}

interface LinkInfo {
  ifname: string;
  ifalias?: string;
}

async function listLinks(type: "bridge" | "veth"): Promise<LinkInfo[]> {
  const out = await runChecked(["ip", "-j", "link", "show", "type", type]);
  return JSON.parse(out || "[]") as LinkInfo[];
}

async function listNamespaces(): Promise<string[]> {
  const out = await runChecked(["ip", "netns", "list"]);
  return out.split("\n").map((line) => line.trim().split(/\s+/)[0]).filter((n) => n);
}

async function listRules(): Promise<{ priority?: number; iif?: string }[]> {
  const out = await runChecked(["ip", "-j", "rule", "show"]);
  return JSON.parse(out || "[]");
}

function indexOf(name: string, pattern: RegExp): number | undefined {
  const match = pattern.exec(name);
  if (!match) return undefined;
  const index = Number(match[1]);
  return index >= 1 && index <= 254 ? index : undefined;
}

function ownerAlias(owner: Owner): string {
  return `${ALIAS_TAG} owner=${owner.pid}/${owner.startTime}`;
}

function parseOwnerAlias(alias: string | undefined): Owner | undefined {
  const match = new RegExp(`^${ALIAS_TAG} owner=(\\d+)/(\\d+)$`).exec(alias ?? "");
  return match ? { pid: Number(match[1]), startTime: match[2] } : undefined;
}

async function currentOwner(): Promise<Owner> {
  const startTime = await processStartTime(Deno.pid);
  if (startTime === undefined) throw new Error("cannot read /proc/self/stat");
  return { pid: Deno.pid, startTime };
}

async function isAlive(owner: Owner): Promise<boolean> {
  return (await processStartTime(owner.pid)) === owner.startTime;
}

/** Field 22 of /proc/<pid>/stat (start time in clock ticks since boot), or undefined if gone. */
async function processStartTime(pid: number): Promise<string | undefined> {
  try {
    const stat = await Deno.readTextFile(`/proc/${pid}/stat`);
    // The command name (field 2) may contain spaces; fields after it are space-separated.
    const rest = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return rest[22 - 3];
  } catch {
    return undefined;
  }
}
