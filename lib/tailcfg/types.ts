/**
 * Wire structs of the Tailscale control protocol, named as in tailscale's tailcfg package. JSON
 * field names are the Go field names unless a json tag says otherwise (noted where it differs).
 * Optional fields are left out when empty, as Go's omitempty would.
 */

/** tailcfg.Hostinfo: kept as the client sent it; only a few fields are read. */
export type Hostinfo = Record<string, unknown> & {
  Hostname?: string;
  OS?: string;
  OSVersion?: string;
  IPNVersion?: string;
  RoutableIPs?: string[];
  RequestTags?: string[];
  NetInfo?: { PreferredDERP?: number } & Record<string, unknown>;
};

export interface RegisterRequest {
  Version: number;
  NodeKey: string;
  OldNodeKey: string;
  NLKey?: string;
  Auth?: { Provider?: string; LoginName?: string; AuthKey?: string } | null;
  /** RFC 3339; "0001-01-01T00:00:00Z" means unset. */
  Expiry?: string;
  Followup?: string;
  Hostinfo?: Hostinfo | null;
  Ephemeral?: boolean;
}

export interface RegisterResponse {
  User: { ID: number; DisplayName: string; ProfilePicURL?: string; Created?: string };
  Login: {
    ID: number;
    Provider: string;
    LoginName: string;
    DisplayName: string;
    ProfilePicURL?: string;
  };
  NodeKeyExpired: boolean;
  MachineAuthorized: boolean;
  AuthURL: string;
  Error?: string;
}

export interface MapRequest {
  Version: number;
  Compress?: string;
  KeepAlive?: boolean;
  NodeKey: string;
  DiscoKey?: string;
  Hostinfo?: Hostinfo | null;
  Endpoints?: string[] | null;
  EndpointTypes?: number[] | null;
  Stream?: boolean;
  OmitPeers?: boolean;
  ReadOnly?: boolean;
  DebugFlags?: string[];
}

export interface UserProfile {
  ID: number;
  LoginName: string;
  DisplayName: string;
  ProfilePicURL?: string;
}

export type CapMap = Record<string, unknown[] | null>;

export interface Node {
  ID: number;
  StableID: string;
  Name: string;
  User: number;
  Key: string;
  KeyExpiry?: string;
  Machine?: string;
  DiscoKey?: string;
  Addresses: string[];
  AllowedIPs: string[];
  Endpoints?: string[];
  /** Legacy home DERP ("127.3.3.40:<region>") for clients older than capability 111. */
  DERP?: string;
  HomeDERP?: number;
  Hostinfo?: Hostinfo;
  Created: string;
  Cap?: number;
  Tags?: string[];
  PrimaryRoutes?: string[];
  LastSeen?: string | null;
  Online?: boolean | null;
  MachineAuthorized: boolean;
  CapMap?: CapMap;
  Expired?: boolean;
}

export interface DERPNode {
  Name: string;
  RegionID: number;
  HostName: string;
  CertName?: string;
  IPv4?: string;
  IPv6?: string;
  STUNPort?: number;
  STUNOnly?: boolean;
  DERPPort?: number;
  InsecureForTests?: boolean;
  STUNTestIP?: string;
  CanPort80?: boolean;
}

export interface DERPRegion {
  RegionID: number;
  RegionCode: string;
  RegionName: string;
  Latitude?: number;
  Longitude?: number;
  Avoid?: boolean;
  NoMeasureNoHome?: boolean;
  Nodes: DERPNode[];
}

export interface DERPMap {
  HomeParams?: { RegionScore?: Record<string, number> | null } | null;
  Regions: Record<string, DERPRegion | null>;
  /** JSON name is lowercase in tailcfg. */
  omitDefaultRegions?: boolean;
}

export interface DNSResolver {
  Addr: string;
  BootstrapResolution?: string[];
  UseWithExitNode?: boolean;
}

export interface DNSConfig {
  Resolvers?: DNSResolver[];
  Routes?: Record<string, DNSResolver[]>;
  FallbackResolvers?: DNSResolver[];
  Domains?: string[];
  Proxied?: boolean;
  CertDomains?: string[];
  ExtraRecords?: { Name: string; Type?: string; Value: string }[];
}

export interface PortRange {
  First: number;
  Last: number;
}

export interface NetPortRange {
  IP: string;
  Ports: PortRange;
}

export interface CapGrant {
  Dsts: string[];
  CapMap?: CapMap;
}

export interface FilterRule {
  SrcIPs: string[];
  DstPorts?: NetPortRange[];
  IPProto?: number[];
  CapGrant?: CapGrant[];
}

/** tailcfg.SSHPolicy; its JSON names are lower case. */
export interface SSHPolicy {
  rules: unknown[];
}

export interface PeerChange {
  NodeID: number;
  DERPRegion?: number;
  Cap?: number;
  CapMap?: CapMap;
  Endpoints?: string[];
  Key?: string;
  DiscoKey?: string;
  Online?: boolean;
  LastSeen?: string;
  KeyExpiry?: string;
}

export interface MapResponse {
  KeepAlive?: boolean;
  Node?: Node;
  DERPMap?: DERPMap;
  Peers?: Node[];
  PeersChanged?: Node[];
  PeersRemoved?: number[];
  PeersChangedPatch?: PeerChange[];
  OnlineChange?: Record<string, boolean>;
  PeerSeenChange?: Record<string, boolean>;
  DNSConfig?: DNSConfig;
  Domain?: string;
  CollectServices?: boolean | null;
  PacketFilter?: FilterRule[];
  PacketFilters?: Record<string, FilterRule[] | null>;
  UserProfiles?: UserProfile[];
  SSHPolicy?: SSHPolicy;
  Health?: string[];
  ControlTime?: string;
  Debug?: { DisableLogTail?: boolean };
  PingRequest?: PingRequest;
}

/**
 * tailcfg.PingRequest: the client answers with an HTTP HEAD to URL (Types "": a plain ping, sent
 * with its ordinary HTTP client unless URLIsNoise).
 */
export interface PingRequest {
  URL: string;
  URLIsNoise?: boolean;
  Log?: boolean;
  Types?: string;
}

/** The zero time Go writes for an unset time.Time. */
export const GO_ZERO_TIME = "0001-01-01T00:00:00Z";

export function parseGoTime(text: string | undefined | null): Date | null {
  if (!text || text.startsWith("0001-01-01")) return null;
  const d = new Date(text);
  return Number.isNaN(d.getTime()) ? null : d;
}
