/**
 * The parts of `tailscale status --json` (ipnstate.Status) and `tailscale netcheck --format=json`
 * (netcheck.Report) that tests look at. Field names mirror the Go structs; anything else the
 * client prints is kept under the index signature.
 */

export interface PeerStatus {
  ID: string;
  NodeID?: number;
  PublicKey: string;
  HostName: string;
  DNSName: string;
  OS: string;
  UserID: number;
  TailscaleIPs: string[] | null;
  AllowedIPs?: string[];
  Tags?: string[];
  PrimaryRoutes?: string[];
  Addrs: string[] | null;
  CurAddr: string;
  Relay: string;
  Online: boolean;
  ExitNode: boolean;
  ExitNodeOption: boolean;
  Active: boolean;
  LastHandshake: string;
  InNetworkMap: boolean;
  InMagicSock: boolean;
  InEngine: boolean;
  Expired?: boolean;
  KeyExpiry?: string;
  [field: string]: unknown;
}

export interface UserProfile {
  ID: number;
  LoginName: string;
  DisplayName: string;
  [field: string]: unknown;
}

export interface TailscaleStatus {
  Version: string;
  /** "NoState", "NeedsLogin", "NeedsMachineAuth", "Stopped", "Starting" or "Running". */
  BackendState: string;
  AuthURL: string;
  TailscaleIPs: string[] | null;
  Self: PeerStatus | null;
  Health: string[] | null;
  MagicDNSSuffix: string;
  CurrentTailnet: { Name: string; MagicDNSSuffix: string; MagicDNSEnabled: boolean } | null;
  /** Keyed by node public key ("nodekey:…"). */
  Peer: Record<string, PeerStatus> | null;
  /** Keyed by user ID. */
  User: Record<string, UserProfile> | null;
  [field: string]: unknown;
}

export interface NetcheckReport {
  UDP: boolean;
  IPv4: boolean;
  IPv6: boolean;
  MappingVariesByDestIP?: boolean | null;
  PreferredDERP: number;
  /** DERP region ID → latency in nanoseconds. */
  RegionLatency?: Record<string, number> | null;
  GlobalV4?: string;
  [field: string]: unknown;
}

/** Parses `tailscale status --json` output, with a clear error for anything else. */
export function parseStatus(json: string): TailscaleStatus {
  const value = parseJsonObject(json, "tailscale status --json");
  if (typeof value.BackendState !== "string") {
    throw new Error(`tailscale status --json: no BackendState in ${json.slice(0, 200)}`);
  }
  return value as TailscaleStatus;
}

/** Parses `tailscale netcheck --format=json` output (any text before the JSON is skipped). */
export function parseNetcheck(output: string): NetcheckReport {
  const start = output.indexOf("{");
  if (start < 0) throw new Error(`tailscale netcheck: no JSON in ${output.slice(0, 200)}`);
  return parseJsonObject(output.slice(start), "tailscale netcheck") as NetcheckReport;
}

/** All peers in a status, in no particular order. */
export function peersOf(status: TailscaleStatus): PeerStatus[] {
  return Object.values(status.Peer ?? {});
}

function parseJsonObject(text: string, what: string): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new Error(`${what}: invalid JSON (${(error as Error).message}): ${text.slice(0, 200)}`);
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new Error(`${what}: expected a JSON object, got ${text.slice(0, 200)}`);
  }
  return value as Record<string, unknown>;
}
