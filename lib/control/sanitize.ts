/**
 * Checks what clients send before it is stored or forwarded to peers. A peer's Hostinfo and
 * endpoints end up in every other client's MapResponse, and Go's JSON decoder rejects the whole
 * message when one field has the wrong type, so one bad node could break the tailnet: only
 * well-typed, known fields pass.
 */
import { parseIP, parsePrefix } from "../net/ip.ts";
import type { Hostinfo } from "../tailcfg/types.ts";

const KEY_HEX = /^[0-9a-f]{64}$/;
const ZERO_HEX = "0".repeat(64);

/** True for `prefix` + 64 lowercase hex digits (the text form of a 32-byte key). */
export function isKeyText(text: unknown, prefix: string): text is string {
  return typeof text === "string" && text.startsWith(prefix) &&
    KEY_HEX.test(text.slice(prefix.length));
}

/** True for the all-zero key, which Go sends for "no key". */
export function isZeroKey(text: string): boolean {
  return text.endsWith(ZERO_HEX);
}

/** A usable (valid, non-zero) key of the given kind, or null. */
export function usableKey<P extends string>(text: unknown, prefix: P): `${P}${string}` | null {
  return isKeyText(text, prefix) && !isZeroKey(text) ? text as `${P}${string}` : null;
}

export const MAX_ENDPOINTS = 64;

/**
 * Keeps endpoints a Go netip.AddrPort accepts, as testcontrol does: no zones, no IPv6
 * link-local. Returns them in canonical text form, de-duplicated, at most MAX_ENDPOINTS.
 */
export function sanitizeEndpoints(input: unknown): string[] {
  if (!Array.isArray(input)) return [];
  const out = new Set<string>();
  for (const item of input) {
    if (out.size >= MAX_ENDPOINTS) break;
    if (typeof item !== "string" || item.length > 64) continue;
    const m = /^(?:\[([^\]]+)\]|([^:\[\]]+)):(\d{1,5})$/.exec(item);
    if (!m) continue;
    const host = m[1] ?? m[2];
    const port = Number(m[3]);
    if (port > 65535 || host.includes("%")) continue;
    const ip = parseIP(host);
    if (!ip || (ip.family === 6) !== (m[1] !== undefined)) continue;
    if (ip.family === 6 && (ip.value >> 118n) === 0x3fan) continue; // fe80::/10
    out.add(item);
  }
  return [...out];
}

type FieldKind =
  | "string"
  | "bool"
  | "optbool"
  | "int"
  | "number"
  | "strings"
  | "prefixes"
  | "services"
  | "latencies"
  | { object: Record<string, FieldKind> };

const LOCATION: Record<string, FieldKind> = {
  Country: "string",
  CountryCode: "string",
  City: "string",
  CityCode: "string",
  Latitude: "number",
  Longitude: "number",
  Priority: "int",
};

const NET_INFO: Record<string, FieldKind> = {
  MappingVariesByDestIP: "optbool",
  WorkingIPv6: "optbool",
  OSHasIPv6: "optbool",
  WorkingUDP: "optbool",
  WorkingICMPv4: "optbool",
  HavePortMap: "bool",
  UPnP: "optbool",
  PMP: "optbool",
  PCP: "optbool",
  PreferredDERP: "int",
  LinkType: "string",
  DERPLatency: "latencies",
  FirewallMode: "string",
};

const TPM_INFO: Record<string, FieldKind> = {
  Manufacturer: "string",
  Vendor: "string",
  Model: "int",
  FirmwareVersion: "int",
  SpecRevision: "int",
  FamilyIndicator: "string",
};

/** tailcfg.Hostinfo at capability 145, minus PushDeviceToken (a secret peers must not see). */
const HOSTINFO: Record<string, FieldKind> = {
  IPNVersion: "string",
  FrontendLogID: "string",
  BackendLogID: "string",
  OS: "string",
  OSVersion: "string",
  Container: "optbool",
  Env: "string",
  Distro: "string",
  DistroVersion: "string",
  DistroCodeName: "string",
  App: "string",
  Desktop: "optbool",
  Package: "string",
  DeviceModel: "string",
  Hostname: "string",
  ShieldsUp: "bool",
  ShareeNode: "bool",
  NoLogsNoSupport: "bool",
  RemoteConfig: "bool",
  WireIngress: "bool",
  IngressEnabled: "bool",
  AllowsUpdate: "bool",
  Machine: "string",
  GoArch: "string",
  GoArchVar: "string",
  GoVersion: "string",
  RoutableIPs: "prefixes",
  RequestTags: "strings",
  WoLMACs: "strings",
  Services: "services",
  NetInfo: { object: NET_INFO },
  sshHostKeys: "strings",
  Cloud: "string",
  Userspace: "optbool",
  UserspaceRouter: "optbool",
  AppConnector: "optbool",
  ServicesHash: "string",
  PeerRelay: "bool",
  ExitNodeID: "string",
  Location: { object: LOCATION },
  TPM: { object: TPM_INFO },
  StateEncrypted: "optbool",
};

const MAX_STRING = 1024;
const MAX_LIST = 256;

const lowerIndex = (schema: Record<string, FieldKind>) =>
  new Map(Object.keys(schema).map((k) => [k.toLowerCase(), k]));
const INDEXES = new Map<Record<string, FieldKind>, Map<string, string>>(
  [HOSTINFO, NET_INFO, LOCATION, TPM_INFO].map((s) => [s, lowerIndex(s)]),
);

function cleanValue(kind: FieldKind, v: unknown): unknown {
  if (typeof kind === "object") {
    return v !== null && typeof v === "object" && !Array.isArray(v)
      ? cleanObject(v as Record<string, unknown>, kind.object)
      : undefined;
  }
  switch (kind) {
    case "string":
      return typeof v === "string" && v.length <= MAX_STRING ? v : undefined;
    case "bool":
      return typeof v === "boolean" ? v : undefined;
    case "optbool":
      return typeof v === "boolean" ? v : undefined;
    case "int":
      // `+ 0` turns -0 (which JSON.parse can produce) into 0, as Go's int would.
      return Number.isSafeInteger(v) && (v as number) >= 0 ? (v as number) + 0 : undefined;
    case "number":
      return typeof v === "number" && Number.isFinite(v) ? v + 0 : undefined;
    case "strings":
      return Array.isArray(v)
        ? v.filter((s) => typeof s === "string" && s.length <= MAX_STRING).slice(0, MAX_LIST)
        : undefined;
    case "prefixes":
      return Array.isArray(v)
        ? v.filter((s) => typeof s === "string" && s.includes("/") && parsePrefix(s) !== null)
          .slice(0, MAX_LIST)
        : undefined;
    case "services":
      return Array.isArray(v)
        ? v.flatMap((s) => {
          if (s === null || typeof s !== "object") return [];
          const { Proto, Port, Description } = s as Record<string, unknown>;
          if (typeof Proto !== "string" || Proto.length > 32) return [];
          if (!Number.isInteger(Port) || (Port as number) < 0 || (Port as number) > 65535) {
            return [];
          }
          const out: Record<string, unknown> = { Proto, Port: (Port as number) + 0 };
          if (typeof Description === "string" && Description !== "") {
            out.Description = Description.slice(0, MAX_STRING);
          }
          return [out];
        }).slice(0, MAX_LIST)
        : undefined;
    case "latencies": {
      if (v === null || typeof v !== "object" || Array.isArray(v)) return undefined;
      const out: Record<string, number> = {};
      for (const [k, n] of Object.entries(v).slice(0, MAX_LIST)) {
        if (typeof n === "number" && Number.isFinite(n) && k.length <= 64) out[k] = n + 0;
      }
      return out;
    }
  }
}

function cleanObject(
  input: Record<string, unknown>,
  schema: Record<string, FieldKind>,
): Record<string, unknown> {
  const index = INDEXES.get(schema)!;
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(input)) {
    // Go matches JSON names case-insensitively, so must we, or a "hostname": 5 would slip by.
    const name = index.get(key.toLowerCase());
    if (name === undefined || value === null) continue;
    const clean = cleanValue(schema[name], value);
    if (clean !== undefined) out[name] = clean;
  }
  return out;
}

/** A Hostinfo with only known, well-typed fields; null when the input is not an object. */
export function sanitizeHostinfo(input: unknown): Hostinfo | null {
  if (input === null || typeof input !== "object" || Array.isArray(input)) return null;
  return cleanObject(input as Record<string, unknown>, HOSTINFO) as Hostinfo;
}
