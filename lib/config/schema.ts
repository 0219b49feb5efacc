/**
 * Every configuration key headscale-deno understands, with its type and default.
 *
 * Key names, meanings and most defaults are headscale's. Where headscale's default only makes
 * sense for a packaged install (/var/lib/headscale, Tailscale's public DERP map), ours keeps the
 * server runnable from a checkout with no config file: data under ./data, embedded DERP on.
 */

export type KeyKind = "string" | "bool" | "int" | "duration" | "strings" | "map" | "list";

export interface KeySpec {
  kind: KeyKind;
  default: unknown;
  /** Accepted for compatibility with headscale config files, but has no effect here. */
  ignored?: boolean;
  /** Why an ignored key changes nothing, or what to use instead (shown in its warning). */
  note?: string;
}

const POOL = "the pool keeps up to database.postgres.max_open_conns connections open";

export const SCHEMA: Record<string, KeySpec> = {
  server_url: { kind: "string", default: "http://127.0.0.1:8080" },
  listen_addr: { kind: "string", default: "127.0.0.1:8080" },
  metrics_listen_addr: { kind: "string", default: "127.0.0.1:9090" },
  grpc_listen_addr: { kind: "string", default: "" },
  grpc_allow_insecure: { kind: "bool", default: false },
  trusted_proxies: { kind: "strings", default: [] },
  "noise.private_key_path": { kind: "string", default: "./data/noise_private.key" },
  "prefixes.v4": { kind: "string", default: "100.64.0.0/10" },
  "prefixes.v6": { kind: "string", default: "fd7a:115c:a1e0::/48" },
  "prefixes.allocation": { kind: "string", default: "sequential" },

  "derp.server.enabled": { kind: "bool", default: true },
  "derp.server.region_id": { kind: "int", default: 999 },
  "derp.server.region_code": { kind: "string", default: "headscale" },
  "derp.server.region_name": { kind: "string", default: "Headscale Embedded DERP" },
  "derp.server.verify_clients": { kind: "bool", default: true },
  "derp.server.stun_listen_addr": { kind: "string", default: "0.0.0.0:3478" },
  "derp.server.stun.enabled": { kind: "bool", default: true },
  "derp.server.private_key_path": { kind: "string", default: "./data/derp_server_private.key" },
  "derp.server.automatically_add_embedded_derp_region": { kind: "bool", default: true },
  "derp.server.ipv4": { kind: "string", default: "" },
  "derp.server.ipv6": { kind: "string", default: "" },
  "derp.urls": { kind: "strings", default: [] },
  "derp.paths": { kind: "strings", default: [] },
  "derp.auto_update_enabled": { kind: "bool", default: true },
  "derp.update_frequency": { kind: "duration", default: "3h" },
  disable_check_updates: { kind: "bool", default: false, ignored: true },

  "node.expiry": { kind: "duration", default: "0" },
  "node.ephemeral.inactivity_timeout": { kind: "duration", default: "120s" },
  "node.routes.ha.probe_interval": { kind: "duration", default: "10s" },
  "node.routes.ha.probe_timeout": { kind: "duration", default: "5s" },
  "preauth_keys.revoked_retention": { kind: "duration", default: "168h" },

  "database.type": { kind: "string", default: "sqlite" },
  "database.debug": { kind: "bool", default: false },
  "database.sqlite.path": { kind: "string", default: "./data/db.sqlite" },
  "database.sqlite.write_ahead_log": { kind: "bool", default: true },
  "database.sqlite.wal_autocheckpoint": {
    kind: "int",
    default: 1000,
    ignored: true,
    note: "SQLite's own checkpoint threshold (1000 pages) is used",
  },
  "database.postgres.host": { kind: "string", default: "" },
  "database.postgres.port": { kind: "int", default: 5432 },
  "database.postgres.name": { kind: "string", default: "headscale" },
  "database.postgres.user": { kind: "string", default: "" },
  "database.postgres.pass": { kind: "string", default: "" },
  "database.postgres.max_open_conns": { kind: "int", default: 10 },
  "database.postgres.max_idle_conns": { kind: "int", default: 10, ignored: true, note: POOL },
  "database.postgres.conn_max_idle_time_secs": {
    kind: "int",
    default: 3600,
    ignored: true,
    note: POOL,
  },
  "database.postgres.ssl": { kind: "string", default: "false" },
  "database.gorm.prepare_stmt": { kind: "bool", default: true, ignored: true },
  "database.gorm.parameterized_queries": { kind: "bool", default: true, ignored: true },
  "database.gorm.skip_err_record_not_found": { kind: "bool", default: true, ignored: true },
  "database.gorm.slow_threshold": { kind: "int", default: 1000, ignored: true },

  acme_url: { kind: "string", default: "", ignored: true },
  acme_email: { kind: "string", default: "", ignored: true },
  tls_letsencrypt_hostname: { kind: "string", default: "" },
  tls_letsencrypt_cache_dir: { kind: "string", default: "", ignored: true },
  tls_letsencrypt_challenge_type: { kind: "string", default: "HTTP-01", ignored: true },
  tls_letsencrypt_listen: { kind: "string", default: ":http", ignored: true },
  tls_cert_path: { kind: "string", default: "" },
  tls_key_path: { kind: "string", default: "" },

  "log.level": { kind: "string", default: "info" },
  "log.format": { kind: "string", default: "text" },
  "policy.mode": { kind: "string", default: "file" },
  "policy.path": { kind: "string", default: "" },

  "dns.magic_dns": { kind: "bool", default: true },
  "dns.base_domain": { kind: "string", default: "tailnet.internal" },
  "dns.override_local_dns": { kind: "bool", default: false },
  "dns.nameservers.global": { kind: "strings", default: [] },
  "dns.nameservers.split": { kind: "map", default: {} },
  "dns.search_domains": { kind: "strings", default: [] },
  "dns.extra_records": { kind: "list", default: [] },
  "dns.extra_records_path": { kind: "string", default: "" },

  unix_socket: { kind: "string", default: "./data/headscale.sock" },
  unix_socket_permission: { kind: "string", default: "0770" },

  "oidc.issuer": { kind: "string", default: "" },
  "oidc.client_id": { kind: "string", default: "" },
  "oidc.client_secret": { kind: "string", default: "" },
  "oidc.client_secret_path": { kind: "string", default: "" },
  "oidc.scope": { kind: "strings", default: ["openid", "profile", "email"] },
  "oidc.extra_params": { kind: "map", default: {} },
  "oidc.allowed_domains": { kind: "strings", default: [] },
  "oidc.allowed_groups": { kind: "strings", default: [] },
  "oidc.allowed_users": { kind: "strings", default: [] },
  "oidc.only_start_if_oidc_is_available": { kind: "bool", default: true },
  "oidc.use_expiry_from_token": { kind: "bool", default: false },
  "oidc.email_verified_required": { kind: "bool", default: true },
  "oidc.pkce.enabled": { kind: "bool", default: false },
  "oidc.pkce.method": { kind: "string", default: "S256" },

  "logtail.enabled": { kind: "bool", default: false },
  "taildrop.enabled": { kind: "bool", default: true },
  "auto_update.enabled": { kind: "bool", default: false },

  // The admin web UI (lib/ui, docs/ui.md); not in headscale's file.
  "admin_ui.enabled": { kind: "bool", default: true },
  "admin_ui.path": { kind: "string", default: "/admin" },
  "admin_ui.allowed_ips": { kind: "strings", default: [] },
  "admin_ui.session_duration": { kind: "duration", default: "12h" },
  "admin_ui.oidc.allowed_users": { kind: "strings", default: [] },
  "admin_ui.oidc.allowed_groups": { kind: "strings", default: [] },
  "admin_ui.oidc.allowed_domains": { kind: "strings", default: [] },

  "cli.address": { kind: "string", default: "" },
  "cli.api_key": { kind: "string", default: "" },
  "cli.timeout": { kind: "duration", default: "5s" },
  "cli.insecure": { kind: "bool", default: false },

  "tuning.notifier_send_timeout": { kind: "duration", default: "800ms", ignored: true },
  "tuning.batch_change_delay": { kind: "duration", default: "800ms" },
  "tuning.node_mapsession_buffered_chan_size": { kind: "int", default: 30, ignored: true },
  "tuning.node_store_batch_size": { kind: "int", default: 100 },
  "tuning.node_store_batch_timeout": { kind: "duration", default: "500ms" },
  // Not in headscale's file (its listener has these built in: 30 s read/write deadlines).
  "tuning.http_request_timeout": { kind: "duration", default: "30s" },
  // Each node holds two connections (/ts2021 and DERP): 50,000 covers 10,000 nodes with room.
  "tuning.max_connections": { kind: "int", default: 50_000 },
  // Not in headscale's file. Nodes set up at once (handshake to first map); the rest wait their
  // turn, so a restart under thousands of nodes drains instead of thrashing.
  "tuning.max_connecting_nodes": { kind: "int", default: 64 },
};

/** Keys headscale removed; a config that sets one is refused with the hint. */
export const REMOVED_KEYS: Record<string, string> = {
  acl_policy_path: "use policy.path",
  dns_config: "the dns_config section was renamed to dns",
  randomize_client_port: 'set "randomizeClientPort": true at the top level of the policy instead',
  "oidc.expiry": "use node.expiry",
  "oidc.strip_email_domain": "removed in headscale v0.26",
  "oidc.map_legacy_users": "removed in headscale v0.26",
  "dns.use_username_in_magic_dns": "removed in headscale v0.23",
};

/** Keys the old name of which still works, with a warning. */
export const RENAMED_KEYS: Record<string, string> = {
  ephemeral_node_inactivity_timeout: "node.ephemeral.inactivity_timeout",
};
