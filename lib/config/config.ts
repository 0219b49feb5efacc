/** The typed configuration the rest of the server reads. Durations are milliseconds. */

export interface DnsExtraRecord {
  name: string;
  type: string;
  value: string;
}

/** `oidc.*` once `oidc.issuer` is set (headscale turns OIDC on by the issuer alone). */
export interface OidcConfig {
  issuer: string;
  clientId: string;
  /** `oidc.client_secret`, "" when it comes from a file. */
  clientSecret: string;
  /**
   * `oidc.client_secret_path` with `$VAR`/`${VAR}` expanded (systemd's `$CREDENTIALS_DIRECTORY`);
   * read by the server at start, so the CLI never needs to read it.
   */
  clientSecretPath: string;
  scope: string[];
  extraParams: Record<string, string>;
  allowedDomains: string[];
  allowedUsers: string[];
  allowedGroups: string[];
  emailVerifiedRequired: boolean;
  pkce: { enabled: boolean; method: "S256" | "plain" };
  useExpiryFromToken: boolean;
  onlyStartIfOidcIsAvailable: boolean;
}

export interface Config {
  serverUrl: string;
  listenAddr: string;
  metricsListenAddr: string;
  grpcListenAddr: string;
  grpcAllowInsecure: boolean;
  trustedProxies: string[];
  noisePrivateKeyPath: string;
  prefixes: { v4: string; v6: string; allocation: "sequential" | "random" };
  derp: {
    server: {
      enabled: boolean;
      regionId: number;
      regionCode: string;
      regionName: string;
      verifyClients: boolean;
      stunEnabled: boolean;
      stunListenAddr: string;
      privateKeyPath: string;
      automaticallyAddEmbeddedDerpRegion: boolean;
      ipv4: string;
      ipv6: string;
    };
    urls: string[];
    paths: string[];
    autoUpdateEnabled: boolean;
    updateFrequencyMs: number;
  };
  node: {
    expiryMs: number;
    ephemeralInactivityTimeoutMs: number;
    /**
     * HA subnet routers (2+ online routers for one prefix) are pinged every `probeIntervalMs`
     * (0: never); one that does not answer within `probeTimeoutMs` loses its primary routes.
     */
    routes: { ha: { probeIntervalMs: number; probeTimeoutMs: number } };
  };
  database:
    | { type: "sqlite"; debug: boolean; sqlite: { path: string; writeAheadLog: boolean } }
    | {
      type: "postgres";
      debug: boolean;
      postgres: {
        host: string;
        port: number;
        name: string;
        user: string;
        pass: string;
        ssl: string;
        maxOpenConns: number;
      };
    };
  tls: { certPath: string; keyPath: string };
  log: { level: "trace" | "debug" | "info" | "warn" | "error"; format: "text" | "json" };
  policy: { mode: "file" | "database"; path: string };
  dns: {
    magicDns: boolean;
    baseDomain: string;
    overrideLocalDns: boolean;
    nameservers: { global: string[]; split: Record<string, string[]> };
    searchDomains: string[];
    extraRecords: DnsExtraRecord[];
    extraRecordsPath: string;
  };
  unixSocket: string;
  /** File mode bits, e.g. 0o770. */
  unixSocketPermission: number;
  taildropEnabled: boolean;
  /** logtail.enabled: clients may upload their logs to Tailscale's log service. */
  logtailEnabled: boolean;
  /** auto_update.enabled: the tailnet-wide default for client auto-updates. */
  autoUpdateEnabled: boolean;
  /** Null unless `oidc.issuer` is set. */
  oidc: OidcConfig | null;
  cli: { address: string; apiKey: string; timeoutMs: number; insecure: boolean };
  /** The admin web UI under `path` on the main listener (lib/ui, docs/ui.md). */
  adminUi: {
    enabled: boolean;
    /** Starts with "/", no trailing slash, e.g. "/admin". */
    path: string;
    /** CIDRs that may reach the UI; empty = every address. Others get 404. */
    allowedIps: string[];
    sessionDurationMs: number;
    /**
     * Who may sign in as admin through the server's OIDC provider. All empty = OIDC admin
     * sign-in is off (fail closed); only the one-time link from the CLI works then.
     */
    oidc: { allowedUsers: string[]; allowedGroups: string[]; allowedDomains: string[] };
  };
  tuning: {
    batchChangeDelayMs: number;
    nodeStoreBatchSize: number;
    nodeStoreBatchTimeoutMs: number;
    /** Deadline to receive a plain HTTP request; also the write inactivity timeout. */
    httpRequestTimeoutMs: number;
    /** Connections open at once, per listener. */
    maxConnections: number;
    /** Full maps answered at once; other map requests wait their turn (setup_gate.ts). */
    maxConnectingNodes: number;
  };
}
