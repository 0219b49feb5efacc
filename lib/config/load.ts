/**
 * Reads headscale-style configuration: defaults, then the YAML file, then HEADSCALE_* environment
 * variables (`database.sqlite.path` → HEADSCALE_DATABASE_SQLITE_PATH), then validation.
 */
import { parse as parseYaml, YAMLParseError } from "yaml";
import type { Config, DnsExtraRecord, OidcConfig } from "./config.ts";
import { parseDuration } from "./duration.ts";
import { type KeySpec, REMOVED_KEYS, RENAMED_KEYS, SCHEMA } from "./schema.ts";
import { parseIP, parsePrefix, prefixWithin } from "../net/ip.ts";

/** A configuration problem; the message names the key (or file) and what is wrong. */
export class ConfigError extends Error {
  override name = "ConfigError";
}

export interface LoadedConfig {
  config: Config;
  /** The file that was read, or null when running on embedded defaults. */
  path: string | null;
  warnings: string[];
}

export interface LoadOptions {
  /** Explicit file (-c/--config or HEADSCALE_CONFIG); must exist when given. */
  path?: string;
  env?: Record<string, string | undefined>;
  /** Where to look for config.yaml when no path is given. */
  searchPaths?: string[];
}

export function envNameFor(key: string): string {
  return "HEADSCALE_" + key.toUpperCase().replaceAll(".", "_");
}

export function defaultSearchPaths(home: string | undefined): string[] {
  const paths = ["/etc/headscale/config.yaml"];
  if (home) paths.push(`${home}/.headscale/config.yaml`);
  paths.push("./config.yaml");
  return paths;
}

function fileExists(path: string): boolean {
  try {
    return Deno.statSync(path).isFile;
  } catch {
    return false;
  }
}

/** Loads and validates the configuration; throws ConfigError listing every problem found. */
export function loadConfig(opts: LoadOptions = {}): LoadedConfig {
  const env = opts.env ?? Deno.env.toObject();
  const explicit = opts.path ?? env.HEADSCALE_CONFIG;
  let path: string | null = null;
  if (explicit) {
    if (!fileExists(explicit)) throw new ConfigError(`config file ${explicit} does not exist`);
    path = explicit;
  } else {
    path = (opts.searchPaths ?? defaultSearchPaths(env.HOME)).find(fileExists) ?? null;
  }
  const text = path === null ? "" : Deno.readTextFileSync(path);
  return parseConfigText(text, { env, path });
}

/** Parses configuration text (YAML) with the given environment; used by loadConfig and tests. */
export function parseConfigText(
  text: string,
  { env = {}, path = null }: { env?: Record<string, string | undefined>; path?: string | null } =
    {},
): LoadedConfig {
  const where = path ?? "config";
  let doc: unknown;
  try {
    doc = text.trim() === "" ? {} : parseYaml(text);
  } catch (e) {
    const msg = e instanceof YAMLParseError ? e.message.split("\n")[0] : String(e);
    throw new ConfigError(`${where}: not valid YAML: ${msg}`);
  }
  if (doc === null || doc === undefined) doc = {};
  if (typeof doc !== "object" || Array.isArray(doc)) {
    throw new ConfigError(`${where}: the top level must be a mapping of keys`);
  }

  const warnings: string[] = [];
  const errors: string[] = [];
  const raw = new Map<string, unknown>();
  flatten(doc as Record<string, unknown>, "", raw, warnings, errors);

  for (const [oldKey, newKey] of Object.entries(RENAMED_KEYS)) {
    if (raw.has(oldKey)) {
      warnings.push(`${oldKey} is deprecated; use ${newKey}`);
      if (!raw.has(newKey)) raw.set(newKey, raw.get(oldKey));
      raw.delete(oldKey);
    }
  }

  const values = new Map<string, unknown>();
  for (const [key, spec] of Object.entries(SCHEMA)) {
    const fromEnv = env[envNameFor(key)];
    const source = fromEnv !== undefined ? envNameFor(key) : key;
    const value = fromEnv !== undefined ? fromEnv : raw.has(key) ? raw.get(key) : spec.default;
    if (spec.ignored && raw.has(key)) {
      warnings.push(
        `${key} is accepted but has no effect here${spec.note ? `: ${spec.note}` : ""}`,
      );
    }
    try {
      values.set(key, coerce(value, spec));
    } catch (e) {
      errors.push(`${source}: ${(e as Error).message}`);
    }
  }
  const oidc = readOidc(values, env, errors);
  if (errors.length) throw new ConfigError(errors.join("\n"));

  const config = build(values);
  config.oidc = oidc;
  validate(config, values, errors, warnings);
  if (errors.length) throw new ConfigError(errors.join("\n"));
  return { config, path, warnings };
}

/** Walks the YAML tree into dotted keys, stopping at keys whose value is a free-form map. */
function flatten(
  obj: Record<string, unknown>,
  prefix: string,
  out: Map<string, unknown>,
  warnings: string[],
  errors: string[],
): void {
  for (const [k, v] of Object.entries(obj)) {
    const key = prefix + k;
    if (key in REMOVED_KEYS) {
      errors.push(`${key} is no longer supported: ${REMOVED_KEYS[key]}`);
      continue;
    }
    if (key in SCHEMA || key in RENAMED_KEYS) {
      out.set(key, v);
      continue;
    }
    const isSection = Object.keys(SCHEMA).some((s) => s.startsWith(key + "."));
    if (isSection && v !== null && typeof v === "object" && !Array.isArray(v)) {
      flatten(v as Record<string, unknown>, key + ".", out, warnings, errors);
    } else if (isSection && v === null) {
      continue; // An empty section ("oidc:" with everything commented out).
    } else {
      warnings.push(`unknown configuration key ${key} (ignored)`);
    }
  }
}

function coerce(value: unknown, spec: KeySpec): unknown {
  switch (spec.kind) {
    case "string":
      if (value === null) return "";
      if (typeof value === "string") return value;
      if (typeof value === "number" || typeof value === "boolean") return String(value);
      throw new Error(`expected a string, got ${describe(value)}`);
    case "bool":
      if (typeof value === "boolean") return value;
      if (typeof value === "string" && /^(true|1|yes|on)$/i.test(value)) return true;
      if (typeof value === "string" && /^(false|0|no|off|)$/i.test(value)) return false;
      throw new Error(`expected true or false, got ${describe(value)}`);
    case "int": {
      const n = typeof value === "string" && /^-?\d+$/.test(value.trim()) ? Number(value) : value;
      if (typeof n === "number" && Number.isInteger(n)) return n;
      throw new Error(`expected a whole number, got ${describe(value)}`);
    }
    case "duration":
      if (typeof value !== "string" && typeof value !== "number") {
        throw new Error(`expected a duration like 30s or 2h, got ${describe(value)}`);
      }
      return parseDuration(value);
    case "strings":
      if (value === null) return [];
      if (typeof value === "string") return value.split(/[\s,]+/).filter(Boolean);
      if (Array.isArray(value) && value.every((x) => typeof x === "string")) return value;
      throw new Error(`expected a list of strings, got ${describe(value)}`);
    case "map":
      if (value === null) return {};
      if (typeof value === "string") {
        try {
          value = JSON.parse(value);
        } catch {
          throw new Error("expected a JSON object in the environment variable");
        }
      }
      if (typeof value === "object" && !Array.isArray(value)) return value;
      throw new Error(`expected a mapping, got ${describe(value)}`);
    case "list":
      if (value === null) return [];
      if (typeof value === "string") {
        try {
          value = JSON.parse(value);
        } catch {
          throw new Error("expected a JSON list in the environment variable");
        }
      }
      if (Array.isArray(value)) return value;
      throw new Error(`expected a list, got ${describe(value)}`);
  }
}

function describe(v: unknown): string {
  if (v === null) return "nothing";
  if (Array.isArray(v)) return "a list";
  if (typeof v === "object") return "a mapping";
  return `${typeof v} ${JSON.stringify(v)}`;
}

function build(v: Map<string, unknown>): Config {
  const s = (k: string) => v.get(k) as string;
  const b = (k: string) => v.get(k) as boolean;
  const n = (k: string) => v.get(k) as number;
  const l = (k: string) => v.get(k) as string[];
  const dbType = s("database.type") === "sqlite3" ? "sqlite" : s("database.type");
  return {
    serverUrl: s("server_url").replace(/\/+$/, ""),
    listenAddr: s("listen_addr"),
    metricsListenAddr: s("metrics_listen_addr"),
    grpcListenAddr: s("grpc_listen_addr"),
    grpcAllowInsecure: b("grpc_allow_insecure"),
    trustedProxies: l("trusted_proxies"),
    noisePrivateKeyPath: s("noise.private_key_path"),
    prefixes: {
      v4: s("prefixes.v4"),
      v6: s("prefixes.v6"),
      allocation: s("prefixes.allocation") as "sequential" | "random",
    },
    derp: {
      server: {
        enabled: b("derp.server.enabled"),
        regionId: n("derp.server.region_id"),
        regionCode: s("derp.server.region_code"),
        regionName: s("derp.server.region_name"),
        verifyClients: b("derp.server.verify_clients"),
        stunEnabled: b("derp.server.stun.enabled"),
        stunListenAddr: s("derp.server.stun_listen_addr"),
        privateKeyPath: s("derp.server.private_key_path"),
        automaticallyAddEmbeddedDerpRegion: b("derp.server.automatically_add_embedded_derp_region"),
        ipv4: s("derp.server.ipv4"),
        ipv6: s("derp.server.ipv6"),
      },
      urls: l("derp.urls"),
      paths: l("derp.paths"),
      autoUpdateEnabled: b("derp.auto_update_enabled"),
      updateFrequencyMs: n("derp.update_frequency"),
    },
    node: {
      expiryMs: n("node.expiry"),
      ephemeralInactivityTimeoutMs: n("node.ephemeral.inactivity_timeout"),
      routes: {
        ha: {
          probeIntervalMs: n("node.routes.ha.probe_interval"),
          probeTimeoutMs: n("node.routes.ha.probe_timeout"),
        },
      },
    },
    database: dbType === "postgres"
      ? {
        type: "postgres",
        debug: b("database.debug"),
        postgres: {
          host: s("database.postgres.host"),
          port: n("database.postgres.port"),
          name: s("database.postgres.name"),
          user: s("database.postgres.user"),
          pass: s("database.postgres.pass"),
          ssl: s("database.postgres.ssl"),
          maxOpenConns: n("database.postgres.max_open_conns"),
        },
      }
      : {
        type: "sqlite",
        debug: b("database.debug"),
        sqlite: {
          path: s("database.sqlite.path"),
          writeAheadLog: b("database.sqlite.write_ahead_log"),
        },
      },
    tls: { certPath: s("tls_cert_path"), keyPath: s("tls_key_path") },
    log: { level: s("log.level") as Config["log"]["level"], format: s("log.format") as "text" },
    policy: { mode: s("policy.mode") as "file", path: s("policy.path") },
    dns: {
      magicDns: b("dns.magic_dns"),
      baseDomain: s("dns.base_domain"),
      overrideLocalDns: b("dns.override_local_dns"),
      nameservers: {
        global: l("dns.nameservers.global"),
        split: v.get("dns.nameservers.split") as Record<string, string[]>,
      },
      searchDomains: l("dns.search_domains"),
      extraRecords: v.get("dns.extra_records") as DnsExtraRecord[],
      extraRecordsPath: s("dns.extra_records_path"),
    },
    unixSocket: s("unix_socket"),
    unixSocketPermission: parseInt(s("unix_socket_permission").replace(/^0o/, ""), 8),
    taildropEnabled: b("taildrop.enabled"),
    logtailEnabled: b("logtail.enabled"),
    autoUpdateEnabled: b("auto_update.enabled"),
    oidc: null,
    cli: {
      address: s("cli.address"),
      apiKey: s("cli.api_key"),
      timeoutMs: n("cli.timeout"),
      insecure: b("cli.insecure"),
    },
    adminUi: {
      enabled: b("admin_ui.enabled"),
      path: s("admin_ui.path").replace(/\/+$/, ""),
      allowedIps: l("admin_ui.allowed_ips"),
      sessionDurationMs: n("admin_ui.session_duration"),
      oidc: {
        allowedUsers: l("admin_ui.oidc.allowed_users"),
        allowedGroups: l("admin_ui.oidc.allowed_groups"),
        allowedDomains: l("admin_ui.oidc.allowed_domains"),
      },
    },
    tuning: {
      batchChangeDelayMs: n("tuning.batch_change_delay"),
      nodeStoreBatchSize: n("tuning.node_store_batch_size"),
      nodeStoreBatchTimeoutMs: n("tuning.node_store_batch_timeout"),
      httpRequestTimeoutMs: n("tuning.http_request_timeout"),
      maxConnections: n("tuning.max_connections"),
      maxConnectingNodes: n("tuning.max_connecting_nodes"),
    },
  };
}

const DNS_LABEL = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;

function validate(c: Config, v: Map<string, unknown>, errors: string[], warnings: string[]) {
  const err = (key: string, msg: string) => errors.push(`${key}: ${msg}`);

  let serverHost = "";
  try {
    const u = new URL(c.serverUrl);
    if (u.protocol !== "http:" && u.protocol !== "https:") throw new Error();
    serverHost = u.hostname;
  } catch {
    err("server_url", `must be an http:// or https:// URL, got "${c.serverUrl}"`);
  }
  for (const key of ["listen_addr", "metrics_listen_addr", "grpc_listen_addr"]) {
    const addr = v.get(key) as string;
    if (addr !== "" && !/^(\[[0-9a-fA-F:.]+\]|[^:\s]*):\d{1,5}$/.test(addr)) {
      err(key, `must be host:port, got "${addr}"`);
    }
  }
  if (c.noisePrivateKeyPath === "") err("noise.private_key_path", "must be set");

  const v4 = parsePrefix(c.prefixes.v4);
  const v6 = parsePrefix(c.prefixes.v6);
  if (c.prefixes.v4 !== "" && (!v4 || v4.family !== 4)) {
    err("prefixes.v4", `"${c.prefixes.v4}" is not an IPv4 prefix`);
  } else if (v4 && !isWithin(c.prefixes.v4, "100.64.0.0/10")) {
    warnings.push(`prefixes.v4: ${c.prefixes.v4} is outside 100.64.0.0/10; clients may drop it`);
  }
  if (c.prefixes.v6 !== "" && (!v6 || v6.family !== 6)) {
    err("prefixes.v6", `"${c.prefixes.v6}" is not an IPv6 prefix`);
  } else if (v6 && !isWithin(c.prefixes.v6, "fd7a:115c:a1e0::/48")) {
    warnings.push(`prefixes.v6: ${c.prefixes.v6} is outside fd7a:115c:a1e0::/48`);
  }
  if (c.prefixes.v4 === "" && c.prefixes.v6 === "") {
    err("prefixes", "at least one of prefixes.v4 and prefixes.v6 must be set");
  }
  if (!["sequential", "random"].includes(c.prefixes.allocation)) {
    err("prefixes.allocation", `must be sequential or random, got "${c.prefixes.allocation}"`);
  }

  const dbType = v.get("database.type") as string;
  if (!["sqlite", "sqlite3", "postgres"].includes(dbType)) {
    err("database.type", `must be sqlite or postgres, got "${dbType}"`);
  } else if (c.database.type === "sqlite" && c.database.sqlite.path === "") {
    err("database.sqlite.path", "must be set");
  } else if (c.database.type === "postgres" && c.database.postgres.host === "") {
    err("database.postgres.host", "must be set when database.type is postgres");
  }

  if ((c.tls.certPath === "") !== (c.tls.keyPath === "")) {
    err("tls_cert_path", "tls_cert_path and tls_key_path must be set together");
  }
  if (v.get("tls_letsencrypt_hostname") !== "") {
    err(
      "tls_letsencrypt_hostname",
      "Let's Encrypt is not supported; use tls_cert_path/tls_key_path",
    );
  }

  if (!["trace", "debug", "info", "warn", "error"].includes(c.log.level)) {
    err("log.level", `must be one of trace, debug, info, warn, error; got "${c.log.level}"`);
  }
  if (!["text", "json"].includes(c.log.format)) {
    err("log.format", `must be text or json, got "${c.log.format}"`);
  }
  if (!["file", "database"].includes(c.policy.mode)) {
    err("policy.mode", `must be file or database, got "${c.policy.mode}"`);
  }

  if (c.node.ephemeralInactivityTimeoutMs <= 65_000) {
    err("node.ephemeral.inactivity_timeout", "must be more than 65s (the client keepalive)");
  }
  // As headscale: probing is off at 0, else at least every 2 s, with 1 s ≤ timeout < interval.
  const ha = c.node.routes.ha;
  if (ha.probeIntervalMs > 0) {
    if (ha.probeIntervalMs < 2_000) {
      err("node.routes.ha.probe_interval", "must be >= 2s (0 turns probing off)");
    }
    if (ha.probeTimeoutMs < 1_000) err("node.routes.ha.probe_timeout", "must be >= 1s");
    if (ha.probeTimeoutMs >= ha.probeIntervalMs) {
      err("node.routes.ha.probe_timeout", "must be less than node.routes.ha.probe_interval");
    }
  }

  const base = c.dns.baseDomain.toLowerCase();
  if (c.dns.magicDns && base === "") err("dns.base_domain", "must be set when dns.magic_dns is on");
  if (base !== "" && !base.split(".").every((l) => DNS_LABEL.test(l))) {
    err("dns.base_domain", `"${c.dns.baseDomain}" is not a valid domain name`);
  }
  if (
    base !== "" && serverHost !== "" && (serverHost === base || serverHost.endsWith("." + base))
  ) {
    err("dns.base_domain", "server_url's host must not be inside base_domain (clients would loop)");
  }
  if (c.dns.overrideLocalDns && c.dns.nameservers.global.length === 0) {
    err("dns.nameservers.global", "must be set when dns.override_local_dns is true");
  }
  for (const ns of c.dns.nameservers.global) {
    if (!parseIP(ns) && !/^https?:\/\//.test(ns)) {
      err("dns.nameservers.global", `"${ns}" is neither an IP address nor a DoH URL`);
    }
  }
  for (const [domain, servers] of Object.entries(c.dns.nameservers.split)) {
    if (!Array.isArray(servers) || !servers.every((s) => typeof s === "string")) {
      err(`dns.nameservers.split.${domain}`, "must be a list of nameservers");
    }
  }
  for (const [i, r] of c.dns.extraRecords.entries()) {
    if (typeof r !== "object" || r === null || typeof r.name !== "string" || !parseIP(r.value)) {
      err(`dns.extra_records[${i}]`, "needs name, type (A or AAAA) and an IP value");
    } else if (r.type && !["A", "AAAA"].includes(r.type)) {
      err(`dns.extra_records[${i}].type`, `must be A or AAAA, got "${r.type}"`);
    }
  }
  if (c.dns.extraRecords.length > 0 && c.dns.extraRecordsPath !== "") {
    err("dns.extra_records", "dns.extra_records and dns.extra_records_path are mutually exclusive");
  }
  if (c.tuning.httpRequestTimeoutMs < 1_000) {
    err("tuning.http_request_timeout", "must be at least 1s");
  }
  if (c.tuning.maxConnections < 1) err("tuning.max_connections", "must be at least 1");
  if (c.tuning.maxConnectingNodes < 1) err("tuning.max_connecting_nodes", "must be at least 1");
  if (!Number.isInteger(c.unixSocketPermission) || c.unixSocketPermission > 0o777) {
    err("unix_socket_permission", "must be an octal file mode like 0770");
  }
  if (c.derp.server.enabled && (c.derp.server.regionId < 1 || c.derp.server.regionId > 65535)) {
    err("derp.server.region_id", "must be between 1 and 65535");
  }
  if (c.grpcListenAddr !== "" && !c.grpcAllowInsecure && c.tls.certPath === "") {
    // As headscale: without TLS (and without grpc_allow_insecure) the remote listener is skipped.
    warnings.push(
      `grpc_listen_addr: not listening on ${c.grpcListenAddr}: remote gRPC needs ` +
        "tls_cert_path/tls_key_path or grpc_allow_insecure: true",
    );
    c.grpcListenAddr = "";
  }
  validateAdminUi(c, err);
  for (const [i, p] of c.trustedProxies.entries()) {
    const prefix = parsePrefix(p);
    if (!prefix) err(`trusted_proxies[${i}]`, `"${p}" is not an IP prefix like 10.0.0.0/8`);
    else if (prefix.bits === 0) err(`trusted_proxies[${i}]`, `"${p}" would trust every address`);
  }
}

/** Paths the main listener serves itself: the admin UI must not shadow them. */
const RESERVED_PATHS = [
  "/api",
  "/auth",
  "/bootstrap-dns",
  "/derp",
  "/headscale.v1.HeadscaleService",
  "/health",
  "/key",
  "/machine",
  "/oidc",
  "/register",
  "/ts2021",
  "/version",
];

function validateAdminUi(c: Config, err: (key: string, msg: string) => void): void {
  const ui = c.adminUi;
  if (!/^(\/[A-Za-z0-9_-]+)+$/.test(ui.path)) {
    err("admin_ui.path", `must be a path like /admin (letters, digits, - and _), got "${ui.path}"`);
  } else if (RESERVED_PATHS.some((r) => ui.path === r || ui.path.startsWith(r + "/"))) {
    err("admin_ui.path", `"${ui.path}" is taken by the server itself`);
  }
  for (const [i, p] of ui.allowedIps.entries()) {
    if (!parsePrefix(p) && !parseIP(p)) {
      err(`admin_ui.allowed_ips[${i}]`, `"${p}" is not an IP prefix like 10.0.0.0/8`);
    }
  }
  if (ui.sessionDurationMs < 60_000) err("admin_ui.session_duration", "must be at least 1m");
}

/** Expands `$VAR` and `${VAR}` as Go's os.ExpandEnv does (an unset variable is ""). */
export function expandEnv(text: string, env: Record<string, string | undefined>): string {
  return text.replace(
    /\$(?:\{([^}]*)\}|([A-Za-z_][A-Za-z0-9_]*))/g,
    (_m, braced: string | undefined, bare: string | undefined) => env[braced ?? bare!] ?? "",
  );
}

/**
 * `oidc.*` as headscale reads them: OIDC is on when `oidc.issuer` is set, which then needs an
 * http(s) issuer URL, a client id, and exactly one of `client_secret` and `client_secret_path`.
 * The other keys have no effect without an issuer (headscale ignores them too).
 */
function readOidc(
  values: Map<string, unknown>,
  env: Record<string, string | undefined>,
  errors: string[],
): OidcConfig | null {
  const s = (k: string) => values.get(k) as string;
  const issuer = s("oidc.issuer");
  if (issuer === undefined || issuer === "") return null;
  const err = (key: string, msg: string) => errors.push(`${key}: ${msg}`);
  try {
    const u = new URL(issuer);
    if ((u.protocol !== "https:" && u.protocol !== "http:") || u.host === "") throw new Error();
  } catch {
    err("oidc.issuer", `must be an http:// or https:// URL, got "${issuer}"`);
  }
  if (s("oidc.client_id") === "") err("oidc.client_id", "is required when oidc.issuer is set");
  const secret = s("oidc.client_secret");
  const secretPath = s("oidc.client_secret_path");
  if (secret !== "" && secretPath !== "") {
    err(
      "oidc.client_secret",
      "oidc.client_secret and oidc.client_secret_path are mutually exclusive",
    );
  } else if (secret === "" && secretPath === "") {
    err("oidc.client_secret", "oidc.client_secret or oidc.client_secret_path is required");
  }
  const method = s("oidc.pkce.method");
  if (method !== "S256" && method !== "plain") {
    err("oidc.pkce.method", `must be S256 or plain, got "${method}"`);
  }
  const scope = values.get("oidc.scope") as string[];
  if (!scope.includes("openid")) err("oidc.scope", 'must include "openid"');
  const extraParams: Record<string, string> = {};
  for (const [k, v] of Object.entries(values.get("oidc.extra_params") as Record<string, unknown>)) {
    if (v !== null && typeof v === "object") {
      err(`oidc.extra_params.${k}`, "must be a string");
    } else extraParams[k] = String(v ?? "");
  }
  const l = (k: string) => values.get(k) as string[];
  const b = (k: string) => values.get(k) as boolean;
  return {
    issuer,
    clientId: s("oidc.client_id"),
    clientSecret: secret,
    clientSecretPath: secretPath === "" ? "" : expandEnv(secretPath, env),
    scope,
    extraParams,
    allowedDomains: l("oidc.allowed_domains"),
    allowedUsers: l("oidc.allowed_users"),
    allowedGroups: l("oidc.allowed_groups"),
    emailVerifiedRequired: b("oidc.email_verified_required"),
    pkce: { enabled: b("oidc.pkce.enabled"), method: method === "plain" ? "plain" : "S256" },
    useExpiryFromToken: b("oidc.use_expiry_from_token"),
    onlyStartIfOidcIsAvailable: b("oidc.only_start_if_oidc_is_available"),
  };
}

function isWithin(prefix: string, outer: string): boolean {
  return prefixWithin(parsePrefix(prefix)!, parsePrefix(outer)!);
}
