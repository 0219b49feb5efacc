import assert from "node:assert/strict";
import { ConfigError, envNameFor, loadConfig, parseConfigText } from "../lib/config/load.ts";
import { formatDuration, parseDuration } from "../lib/config/duration.ts";

Deno.test("config: embedded defaults are valid and runnable from a checkout", () => {
  const { config, warnings } = parseConfigText("");
  assert.equal(config.listenAddr, "127.0.0.1:8080");
  assert.equal(config.serverUrl, "http://127.0.0.1:8080");
  assert.equal(config.database.type, "sqlite");
  assert.ok(config.database.type === "sqlite" && config.database.sqlite.path.startsWith("./data/"));
  assert.ok(config.unixSocket.startsWith("./data/"));
  assert.equal(config.prefixes.v4, "100.64.0.0/10");
  assert.equal(config.node.ephemeralInactivityTimeoutMs, 120_000);
  assert.equal(config.unixSocketPermission, 0o770);
  assert.equal(config.derp.server.enabled, true);
  assert.deepEqual(warnings, []);
});

Deno.test("config: headscale keys are read from YAML", () => {
  const { config } = parseConfigText(`
server_url: https://hs.example.org
listen_addr: 0.0.0.0:443
prefixes:
  v4: 100.64.0.0/16
  allocation: random
database:
  type: postgres
  postgres:
    host: db.internal
    port: 5433
    name: hs
    user: hs
    pass: secret
node:
  expiry: 90d
  ephemeral:
    inactivity_timeout: 30m
dns:
  base_domain: tail.example.net
  nameservers:
    global: [1.1.1.1]
    split:
      corp.example: [10.0.0.53]
policy:
  mode: database
`);
  assert.equal(config.serverUrl, "https://hs.example.org");
  assert.equal(config.prefixes.allocation, "random");
  assert.ok(config.database.type === "postgres");
  assert.equal(config.database.postgres.port, 5433);
  assert.equal(config.node.expiryMs, 90 * 86_400_000);
  assert.equal(config.node.ephemeralInactivityTimeoutMs, 30 * 60_000);
  assert.deepEqual(config.dns.nameservers.split, { "corp.example": ["10.0.0.53"] });
  assert.equal(config.policy.mode, "database");
});

Deno.test("config: HEADSCALE_* environment variables override the file", () => {
  assert.equal(envNameFor("database.sqlite.path"), "HEADSCALE_DATABASE_SQLITE_PATH");
  const { config } = parseConfigText("listen_addr: 127.0.0.1:1\n", {
    env: {
      HEADSCALE_LISTEN_ADDR: "127.0.0.1:9999",
      HEADSCALE_DATABASE_SQLITE_PATH: "/tmp/x.db",
      HEADSCALE_DERP_SERVER_ENABLED: "false",
      HEADSCALE_DNS_NAMESERVERS_GLOBAL: "9.9.9.9 1.1.1.1",
    },
  });
  assert.equal(config.listenAddr, "127.0.0.1:9999");
  assert.ok(config.database.type === "sqlite" && config.database.sqlite.path === "/tmp/x.db");
  assert.equal(config.derp.server.enabled, false);
  assert.deepEqual(config.dns.nameservers.global, ["9.9.9.9", "1.1.1.1"]);
});

Deno.test("config: errors name the key and what is wrong, all at once", () => {
  let msg = "";
  try {
    parseConfigText(`
server_url: ftp://x
prefixes:
  v4: 100.64.0.0/99
  allocation: clever
log:
  level: loud
node:
  ephemeral:
    inactivity_timeout: 10s
`);
  } catch (e) {
    assert.ok(e instanceof ConfigError);
    msg = e.message;
  }
  for (const key of ["server_url", "prefixes.v4", "prefixes.allocation", "log.level"]) {
    assert.match(msg, new RegExp(`^${key.replace(".", "\\.")}:`, "m"), `mentions ${key}`);
  }
  assert.match(msg, /node\.ephemeral\.inactivity_timeout: must be more than 65s/);
});

Deno.test("config: wrong types and bad env values are refused with the variable name", () => {
  assert.throws(
    () => parseConfigText("derp:\n  server:\n    region_id: abc\n"),
    /region_id: expected a whole number/,
  );
  assert.throws(
    () => parseConfigText("", { env: { HEADSCALE_GRPC_ALLOW_INSECURE: "maybe" } }),
    /HEADSCALE_GRPC_ALLOW_INSECURE: expected true or false/,
  );
  assert.throws(() => parseConfigText("listen_addr: [a, b]\n"), /listen_addr: expected a string/);
  assert.throws(() => parseConfigText("a: [\n"), /not valid YAML/);
});

Deno.test("config: unknown keys warn; removed keys are refused with a hint", () => {
  const { warnings } = parseConfigText(
    "listen_adr: 1.2.3.4:5\nderp:\n  server:\n    colour: blue\n",
  );
  assert.ok(warnings.some((w) => w.includes("unknown configuration key listen_adr")));
  assert.ok(warnings.some((w) => w.includes("derp.server.colour")));
  assert.throws(() => parseConfigText("randomize_client_port: true\n"), /randomizeClientPort/);
  const renamed = parseConfigText("ephemeral_node_inactivity_timeout: 5m\n");
  assert.equal(renamed.config.node.ephemeralInactivityTimeoutMs, 300_000);
  assert.ok(renamed.warnings.some((w) => w.includes("deprecated")));
});

Deno.test("config: magic DNS needs a base domain outside the server's own host", () => {
  assert.throws(
    () => parseConfigText("dns:\n  base_domain: ''\n"),
    /dns\.base_domain: must be set/,
  );
  assert.throws(
    () => parseConfigText("server_url: https://hs.example.com\ndns:\n  base_domain: example.com\n"),
    /server_url's host must not be inside base_domain/,
  );
  assert.throws(
    () => parseConfigText("dns:\n  override_local_dns: true\n"),
    /dns\.nameservers\.global: must be set/,
  );
});

Deno.test("config: loadConfig reads an explicit file and refuses a missing one", () => {
  const dir = Deno.makeTempDirSync();
  const path = `${dir}/config.yaml`;
  Deno.writeTextFileSync(path, "listen_addr: 127.0.0.1:7777\n");
  assert.equal(loadConfig({ path, env: {} }).config.listenAddr, "127.0.0.1:7777");
  assert.equal(loadConfig({ env: { HEADSCALE_CONFIG: path } }).path, path);
  assert.throws(() => loadConfig({ path: `${dir}/nope.yaml`, env: {} }), /does not exist/);
  const none = loadConfig({ env: {}, searchPaths: [`${dir}/missing.yaml`] });
  assert.equal(none.path, null);
  Deno.removeSync(dir, { recursive: true });
});

Deno.test("duration: Go forms", () => {
  assert.equal(parseDuration("0"), 0);
  assert.equal(parseDuration("1h30m"), 5_400_000);
  assert.equal(parseDuration("500ms"), 500);
  assert.equal(parseDuration(15), 15_000);
  assert.throws(() => parseDuration("5 minutes"), /invalid duration/);
  assert.equal(formatDuration(5_400_000), "1h30m0s");
});
