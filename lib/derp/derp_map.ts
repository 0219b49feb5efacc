/**
 * The DERP map handed to clients: the embedded region, maps from files (`derp.paths`, YAML or
 * JSON) and maps from URLs (`derp.urls`, JSON), merged into one tailcfg.DERPMap. Keys are
 * matched case-insensitively, as Go's decoders do, so both headscale's lower-case YAML
 * (`regionid:`) and tailcfg's JSON (`"RegionID"`) work. A region set to null in a later source
 * removes it (headscale's documented way to drop e.g. Tailscale's region 1).
 */
import { parse as parseYaml } from "yaml";
import type { DERPMap, DERPNode, DERPRegion } from "../tailcfg/types.ts";
import type { Logger } from "../log/log.ts";

export class DerpMapError extends Error {
  override name = "DerpMapError";
}

export interface EmbeddedRegionOptions {
  regionId: number;
  regionCode: string;
  regionName: string;
  /** Name clients dial and check TLS against (server_url's host). */
  hostName: string;
  /** Public IPs to dial instead of resolving hostName; "" to leave unset. */
  ipv4?: string;
  ipv6?: string;
  /** TCP port of the DERP (HTTPS or HTTP) listener. */
  derpPort: number;
  /** UDP STUN port; -1 when STUN is off. */
  stunPort: number;
  /** Clients skip TLS verification (tests with self-signed certificates only). */
  insecureForTests?: boolean;
  /** Clients may probe http://<ipv4>:80/generate_204. */
  canPort80?: boolean;
}

/** The region describing this server's own DERP relay (headscale's region 999 by default). */
export function embeddedDerpRegion(opts: EmbeddedRegionOptions): DERPRegion {
  if (!isRegionId(opts.regionId)) {
    throw new DerpMapError(`embedded DERP region id ${opts.regionId} is not a positive integer`);
  }
  // URL.hostname keeps IPv6 brackets; the client wants the bare address.
  const hostName = opts.hostName.replace(/^\[(.*)\]$/, "$1");
  if (!hostName) throw new DerpMapError("embedded DERP region needs a host name");
  const node: DERPNode = {
    Name: String(opts.regionId),
    RegionID: opts.regionId,
    HostName: hostName,
  };
  if (opts.ipv4) node.IPv4 = opts.ipv4;
  if (opts.ipv6) node.IPv6 = opts.ipv6;
  if (opts.stunPort !== 0) node.STUNPort = opts.stunPort;
  if (opts.derpPort !== 0) node.DERPPort = opts.derpPort;
  if (opts.insecureForTests) node.InsecureForTests = true;
  if (opts.canPort80) node.CanPort80 = true;
  return {
    RegionID: opts.regionId,
    RegionCode: opts.regionCode,
    RegionName: opts.regionName,
    Nodes: [node],
  };
}

function isRegionId(n: unknown): n is number {
  return typeof n === "number" && Number.isSafeInteger(n) && n > 0;
}

// ---- decoding -------------------------------------------------------------------------------

type Obj = Record<string, unknown>;

/** The object's fields by lower-cased name (Go decoders match names case-insensitively). */
function fields(v: unknown, where: string): Map<string, unknown> {
  if (typeof v !== "object" || v === null || Array.isArray(v)) {
    throw new DerpMapError(`${where}: expected an object`);
  }
  const out = new Map<string, unknown>();
  for (const [k, val] of Object.entries(v as Obj)) out.set(k.toLowerCase(), val);
  return out;
}

function str(f: Map<string, unknown>, name: string, where: string): string | undefined {
  const v = f.get(name);
  if (v === undefined || v === null) return undefined;
  if (typeof v !== "string") throw new DerpMapError(`${where}.${name}: expected a string`);
  return v;
}

function int(f: Map<string, unknown>, name: string, where: string): number | undefined {
  const v = f.get(name);
  if (v === undefined || v === null) return undefined;
  if (typeof v !== "number" || !Number.isSafeInteger(v)) {
    throw new DerpMapError(`${where}.${name}: expected an integer`);
  }
  return v;
}

function num(f: Map<string, unknown>, name: string, where: string): number | undefined {
  const v = f.get(name);
  if (v === undefined || v === null) return undefined;
  if (typeof v !== "number" || !Number.isFinite(v)) {
    throw new DerpMapError(`${where}.${name}: expected a number`);
  }
  return v;
}

function bool(f: Map<string, unknown>, name: string, where: string): boolean | undefined {
  const v = f.get(name);
  if (v === undefined || v === null) return undefined;
  if (typeof v !== "boolean") throw new DerpMapError(`${where}.${name}: expected true or false`);
  return v;
}

function decodeNode(v: unknown, regionId: number, where: string): DERPNode {
  const f = fields(v, where);
  const rid = int(f, "regionid", where) ?? regionId;
  if (rid !== regionId) {
    throw new DerpMapError(`${where}.regionid: ${rid} does not match its region ${regionId}`);
  }
  const node: DERPNode = {
    Name: str(f, "name", where) ?? "",
    RegionID: regionId,
    HostName: str(f, "hostname", where) ?? "",
  };
  const certName = str(f, "certname", where);
  const ipv4 = str(f, "ipv4", where);
  const ipv6 = str(f, "ipv6", where);
  const stunPort = int(f, "stunport", where);
  const stunOnly = bool(f, "stunonly", where);
  const derpPort = int(f, "derpport", where);
  const insecure = bool(f, "insecurefortests", where);
  const stunTestIP = str(f, "stuntestip", where);
  const canPort80 = bool(f, "canport80", where);
  for (const [name, port] of [["stunport", stunPort], ["derpport", derpPort]] as const) {
    if (port !== undefined && (port < -1 || port > 65535)) {
      throw new DerpMapError(`${where}.${name}: ${port} is not a port`);
    }
  }
  if (!node.HostName && !stunOnly) throw new DerpMapError(`${where}.hostname: required`);
  if (certName) node.CertName = certName;
  if (ipv4) node.IPv4 = ipv4;
  if (ipv6) node.IPv6 = ipv6;
  if (stunPort) node.STUNPort = stunPort;
  if (stunOnly) node.STUNOnly = true;
  if (derpPort) node.DERPPort = derpPort;
  if (insecure) node.InsecureForTests = true;
  if (stunTestIP) node.STUNTestIP = stunTestIP;
  if (canPort80) node.CanPort80 = true;
  return node;
}

function decodeRegion(v: unknown, key: number, where: string): DERPRegion {
  const f = fields(v, where);
  const rid = int(f, "regionid", where) ?? key;
  if (rid !== key) throw new DerpMapError(`${where}.regionid: ${rid} does not match its key`);
  const nodesRaw = f.get("nodes") ?? [];
  if (!Array.isArray(nodesRaw)) throw new DerpMapError(`${where}.nodes: expected a list`);
  const region: DERPRegion = {
    RegionID: key,
    RegionCode: str(f, "regioncode", where) ?? "",
    RegionName: str(f, "regionname", where) ?? "",
    Nodes: [],
  };
  const lat = num(f, "latitude", where);
  const lon = num(f, "longitude", where);
  if (lat) region.Latitude = lat;
  if (lon) region.Longitude = lon;
  if (bool(f, "avoid", where)) region.Avoid = true;
  if (bool(f, "nomeasurenohome", where)) region.NoMeasureNoHome = true;
  region.Nodes = nodesRaw.map((n, i) => decodeNode(n, key, `${where}.nodes[${i}]`));
  return region;
}

/**
 * A decoded DERP map from any JSON-like value. Regions set to null stay null here (meaning
 * "remove" when merged).
 */
export function decodeDerpMap(value: unknown, source: string): DERPMap {
  const f = fields(value, source);
  const regionsRaw = f.get("regions") ?? {};
  const regions: DERPMap["Regions"] = {};
  for (const [k, v] of fields(regionsRaw, `${source}: regions`)) {
    const id = /^\d+$/.test(k) ? Number(k) : NaN;
    const where = `${source}: regions.${k}`;
    if (!isRegionId(id)) throw new DerpMapError(`${where}: region id must be a positive integer`);
    regions[String(id)] = v === null ? null : decodeRegion(v, id, where);
  }
  const map: DERPMap = { Regions: regions };
  const home = f.get("homeparams");
  if (home !== undefined && home !== null) {
    const hf = fields(home, `${source}: homeparams`);
    const scoreRaw = hf.get("regionscore");
    if (scoreRaw !== undefined && scoreRaw !== null) {
      const score: Record<string, number> = {};
      for (const [k, v] of fields(scoreRaw, `${source}: homeparams.regionscore`)) {
        if (!/^\d+$/.test(k) || typeof v !== "number") {
          throw new DerpMapError(`${source}: homeparams.regionscore.${k}: expected a number`);
        }
        score[String(Number(k))] = v;
      }
      map.HomeParams = { RegionScore: score };
    }
  }
  if (bool(f, "omitdefaultregions", source)) map.omitDefaultRegions = true;
  return map;
}

/** Parses a DERP map file's text: YAML (which includes JSON). */
export function parseDerpMapText(text: string, source: string): DERPMap {
  let value: unknown;
  try {
    value = parseYaml(text);
  } catch (e) {
    throw new DerpMapError(`${source}: not valid YAML or JSON: ${(e as Error).message}`);
  }
  return decodeDerpMap(value, source);
}

/**
 * Merges maps in order: a later map's region replaces an earlier one with the same ID, a null
 * region removes it. HomeParams scores merge the same way; omitDefaultRegions is sticky.
 */
export function mergeDerpMaps(maps: DERPMap[]): DERPMap {
  const regions = new Map<number, DERPRegion>();
  let score: Record<string, number> | undefined;
  let omit = false;
  for (const m of maps) {
    for (const [k, r] of Object.entries(m.Regions)) {
      if (r === null) regions.delete(Number(k));
      else regions.set(Number(k), structuredClone(r));
    }
    const s = m.HomeParams?.RegionScore;
    if (s) score = { ...score, ...s };
    if (m.omitDefaultRegions) omit = true;
  }
  const out: DERPMap = { Regions: {} };
  for (const id of [...regions.keys()].sort((a, b) => a - b)) {
    out.Regions[String(id)] = regions.get(id)!;
  }
  if (score) out.HomeParams = { RegionScore: score };
  if (omit) out.omitDefaultRegions = true;
  return out;
}

// ---- sources and refresh --------------------------------------------------------------------

export interface DerpMapSourceOptions {
  /** `derp.urls`: JSON DERP maps fetched over HTTP(S). */
  urls: string[];
  /** `derp.paths`: YAML/JSON files; applied after the URLs, so they can override them. */
  paths: string[];
  /** Added last (headscale's automatically_add_embedded_derp_region). */
  embeddedRegion?: DERPRegion | null;
  /** Injected for tests; globalThis.fetch by default. */
  fetch?: typeof fetch;
  readTextFile?: (path: string) => Promise<string>;
  /** Per-URL fetch limit (30 s). */
  timeoutMs?: number;
  /** Largest response accepted from a URL (8 MiB). */
  maxBytes?: number;
  log: Logger;
}

export interface DerpMapSourceError {
  /** The URL or path that failed. */
  source: string;
  message: string;
  /** Whether an earlier good copy of this source is still in use. */
  usingLastGood: boolean;
}

export interface DerpMapRefresh {
  map: DERPMap;
  /** Whether `map` differs from the one before this refresh. */
  changed: boolean;
  errors: DerpMapSourceError[];
}

/**
 * Loads and merges the configured DERP map sources. Each source keeps its last good map: a
 * refresh where a URL fails (network, status, bad JSON) or a file turns invalid keeps serving
 * that source's previous copy and reports why.
 */
export class DerpMapSource {
  private readonly lastGood = new Map<string, DERPMap>();
  private merged: DERPMap = { Regions: {} };
  private mergedJson = JSON.stringify(this.merged);
  private readonly fetchFn: typeof fetch;
  private readonly readFile: (path: string) => Promise<string>;
  private timer?: ReturnType<typeof setInterval>;
  private inFlight?: Promise<DerpMapRefresh>;

  constructor(private readonly opts: DerpMapSourceOptions) {
    this.fetchFn = opts.fetch ?? globalThis.fetch.bind(globalThis);
    this.readFile = opts.readTextFile ?? ((p) => Deno.readTextFile(p));
  }

  /** The current merged map (empty before the first refresh). */
  current(): DERPMap {
    return this.merged;
  }

  /** Every HostName in the current map (for /bootstrap-dns). */
  hostNames(): string[] {
    const out: string[] = [];
    for (const r of Object.values(this.merged.Regions)) {
      for (const n of r?.Nodes ?? []) if (n.HostName) out.push(n.HostName);
    }
    return out;
  }

  /** Re-reads every source; never throws. Concurrent calls share one refresh. */
  refresh(): Promise<DerpMapRefresh> {
    this.inFlight ??= this.doRefresh().finally(() => this.inFlight = undefined);
    return this.inFlight;
  }

  /**
   * Refreshes every `intervalMs`, calling `onChange` with the new map when it changed
   * (headscale's derp.auto_update_enabled / update_frequency).
   */
  start(intervalMs: number, onChange: (map: DERPMap) => void): void {
    this.stop();
    this.timer = setInterval(() => {
      this.refresh().then((r) => {
        if (r.changed) onChange(r.map);
      }).catch((e) => this.opts.log.error("derp map: update failed", { error: e }));
    }, intervalMs);
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  private async doRefresh(): Promise<DerpMapRefresh> {
    const sources = [
      ...this.opts.urls.map((url) => ({ name: url, load: () => this.loadUrl(url) })),
      ...this.opts.paths.map((path) => ({ name: path, load: () => this.loadFile(path) })),
    ];
    const results = await Promise.allSettled(sources.map((s) => s.load()));
    const errors: DerpMapSourceError[] = [];
    const maps: DERPMap[] = [];
    results.forEach((r, i) => {
      const name = sources[i].name;
      if (r.status === "fulfilled") {
        this.lastGood.set(name, r.value);
        maps.push(r.value);
        return;
      }
      const previous = this.lastGood.get(name);
      const message = r.reason instanceof Error ? r.reason.message : String(r.reason);
      errors.push({ source: name, message, usingLastGood: previous !== undefined });
      this.opts.log.warn("derp map: source failed", {
        source: name,
        error: message,
        using_last_good: previous !== undefined,
      });
      if (previous) maps.push(previous);
    });
    if (this.opts.embeddedRegion) {
      const r = this.opts.embeddedRegion;
      maps.push({ Regions: { [String(r.RegionID)]: r } });
    }
    const map = mergeDerpMaps(maps);
    const json = JSON.stringify(map);
    const changed = json !== this.mergedJson;
    this.merged = map;
    this.mergedJson = json;
    return { map, changed, errors };
  }

  private async loadUrl(url: string): Promise<DERPMap> {
    const res = await this.fetchFn(url, {
      signal: AbortSignal.timeout(this.opts.timeoutMs ?? 30_000),
      headers: { accept: "application/json" },
    });
    if (!res.ok) {
      await res.body?.cancel();
      throw new DerpMapError(`${url}: HTTP ${res.status}`);
    }
    const text = await readLimited(res, this.opts.maxBytes ?? 8 << 20, url);
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch {
      throw new DerpMapError(`${url}: response is not JSON`);
    }
    return decodeDerpMap(value, url);
  }

  private async loadFile(path: string): Promise<DERPMap> {
    let text: string;
    try {
      text = await this.readFile(path);
    } catch (e) {
      throw new DerpMapError(`${path}: cannot read: ${(e as Error).message}`);
    }
    return parseDerpMapText(text, path);
  }
}

async function readLimited(res: Response, limit: number, url: string): Promise<string> {
  if (!res.body) return "";
  const reader = res.body.getReader();
  const parts: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.length;
    if (size > limit) {
      await reader.cancel();
      throw new DerpMapError(`${url}: response larger than ${limit} bytes`);
    }
    parts.push(value);
  }
  const all = new Uint8Array(size);
  let off = 0;
  for (const p of parts) {
    all.set(p, off);
    off += p.length;
  }
  return new TextDecoder().decode(all);
}
