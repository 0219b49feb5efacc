/**
 * Switching from headscale: its config-example.yaml loads, keys that would silently do nothing warn
 * or are refused, trusted_proxies resolves client addresses, and the CLI verbs and GET /version
 * answer in headscale's shape.
 */
import assert from "node:assert/strict";
import type { IncomingMessage } from "node:http";
import { ConfigError, parseConfigText } from "../lib/config/load.ts";
import { parsePrivateKeyText } from "../lib/auth/keyfile.ts";
import { clientAddress, resolveClientAddress, trustedProxyHook } from "../lib/net/client_addr.ts";
import { parsePrefix, type Prefix } from "../lib/net/ip.ts";
import { runCli } from "../lib/cli/run.ts";
import { versionHandler } from "../lib/version.ts";
import { captureIO } from "./helpers/cli_io.ts";

const EXAMPLE = new URL("./fixtures/headscale/config-example-v0.29.2.yaml", import.meta.url);

Deno.test("headscale v0.29.2 config-example.yaml loads unchanged", () => {
  const { config, warnings } = parseConfigText(Deno.readTextFileSync(EXAMPLE));
  // Remote gRPC without TLS: skipped with exactly one warning, as headscale skips the listener.
  assert.deepEqual(config.grpcListenAddr, "");
  const grpc = warnings.filter((w) => w.includes("grpc"));
  assert.deepEqual(grpc.length, 1, warnings.join("\n"));
  assert.match(grpc[0], /not listening on 127\.0\.0\.1:50443/);
  // Keys it sets that change nothing here say so.
  for (const key of ["database.sqlite.wal_autocheckpoint"]) {
    assert.ok(warnings.some((w) => w.startsWith(key)), `no warning for ${key}`);
  }
  // HA router probing is implemented: its keys are read, not warned about.
  assert.ok(!warnings.some((w) => w.startsWith("node.routes.ha")), warnings.join("\n"));
  assert.deepEqual(config.node.routes.ha, { probeIntervalMs: 10_000, probeTimeoutMs: 5_000 });
  assert.deepEqual(config.database.type, "sqlite");
  assert.deepEqual(config.noisePrivateKeyPath, "/var/lib/headscale/noise_private.key");
  assert.deepEqual(config.logtailEnabled, false);
  assert.deepEqual(config.autoUpdateEnabled, false);
});

Deno.test("config: grpc with TLS or grpc_allow_insecure keeps the listener", () => {
  const insecure = parseConfigText("grpc_listen_addr: 127.0.0.1:50443\ngrpc_allow_insecure: true");
  assert.deepEqual(insecure.config.grpcListenAddr, "127.0.0.1:50443");
  assert.ok(!insecure.warnings.some((w) => w.includes("grpc")));
});

Deno.test("config: node.routes.ha probing is off at 0, else every 2 s or more, 1 s ≤ timeout < interval", () => {
  const ha = (text: string) =>
    parseConfigText(`node:\n  routes:\n    ha:\n${text}`).config.node.routes.ha;
  assert.deepEqual(ha("      probe_interval: 0s\n      probe_timeout: 0s"), {
    probeIntervalMs: 0,
    probeTimeoutMs: 0,
  });
  assert.deepEqual(ha("      probe_interval: 2s\n      probe_timeout: 1s"), {
    probeIntervalMs: 2_000,
    probeTimeoutMs: 1_000,
  });
  refused(() => ha("      probe_interval: 1s\n      probe_timeout: 500ms"), "must be >= 2s");
  refused(() => ha("      probe_interval: 5s\n      probe_timeout: 500ms"), "must be >= 1s");
  refused(() => ha("      probe_interval: 5s\n      probe_timeout: 5s"), "less than");
});

Deno.test("config: logtail.enabled and auto_update.enabled are read", () => {
  const { config } = parseConfigText("logtail:\n  enabled: true\nauto_update:\n  enabled: true");
  assert.deepEqual(config.logtailEnabled, true);
  assert.deepEqual(config.autoUpdateEnabled, true);
});

Deno.test("config: trusted_proxies must be prefixes, and never everything", () => {
  assert.deepEqual(
    parseConfigText("trusted_proxies: [10.0.0.0/8, '::1/128']").config.trustedProxies,
    ["10.0.0.0/8", "::1/128"],
  );
  refused(() => parseConfigText("trusted_proxies: [0.0.0.0/0]"), "every address");
  refused(() => parseConfigText("trusted_proxies: ['::/0']"), "every address");
  refused(() => parseConfigText("trusted_proxies: [proxy.lan]"), "not an IP");
});

function refused(fn: () => unknown, message: string) {
  assert.throws(fn, (e) => e instanceof ConfigError && e.message.includes(message));
}

function fakeRequest(peer: string, headers: Record<string, string> = {}): IncomingMessage {
  return { socket: { remoteAddress: peer }, headers: { ...headers } } as unknown as IncomingMessage;
}

const prefixes = (...p: string[]): Prefix[] => p.map((x) => parsePrefix(x)!);

Deno.test("trusted_proxies: headers count only from a trusted peer", () => {
  const proxies = prefixes("10.0.0.0/8");
  // An untrusted peer cannot claim another address.
  assert.deepEqual(
    resolveClientAddress(fakeRequest("203.0.113.9", { "x-forwarded-for": "1.2.3.4" }), proxies),
    "203.0.113.9",
  );
  // X-Real-IP from the proxy wins.
  assert.deepEqual(
    resolveClientAddress(fakeRequest("10.0.0.2", { "x-real-ip": "198.51.100.7" }), proxies),
    "198.51.100.7",
  );
  // X-Forwarded-For: the rightmost entry that is not a trusted proxy (a prepended entry loses).
  assert.deepEqual(
    resolveClientAddress(
      fakeRequest("::ffff:10.0.0.2", { "x-forwarded-for": "6.6.6.6, 198.51.100.7, 10.0.0.3" }),
      proxies,
    ),
    "198.51.100.7",
  );
  // No header: the proxy itself.
  assert.deepEqual(resolveClientAddress(fakeRequest("10.0.0.2"), proxies), "10.0.0.2");
});

Deno.test("trusted_proxies: the hook strips proxy headers from untrusted peers", () => {
  const hook = trustedProxyHook(["10.0.0.0/8"]);
  const spoofed = fakeRequest("203.0.113.9", {
    "x-real-ip": "1.2.3.4",
    "x-forwarded-for": "5.6.7.8",
  });
  hook(spoofed);
  assert.deepEqual(spoofed.headers["x-real-ip"], undefined);
  assert.deepEqual(spoofed.headers["x-forwarded-for"], undefined);
  assert.deepEqual(clientAddress(spoofed), "203.0.113.9");
  const proxied = fakeRequest("10.1.2.3", { "x-forwarded-for": "198.51.100.7" });
  hook(proxied);
  assert.deepEqual(clientAddress(proxied), "198.51.100.7");
  // Without the hook: the TCP peer.
  assert.deepEqual(clientAddress(fakeRequest("::ffff:192.0.2.1")), "192.0.2.1");
});

Deno.test("cli: version -o json has headscale's shape", async () => {
  const io = captureIO();
  assert.deepEqual(await runCli(["version", "-o", "json"], io), 0);
  const info = JSON.parse(io.out.join("\n"));
  assert.deepEqual(Object.keys(info).sort(), ["buildTime", "commit", "dirty", "go", "version"]);
  assert.deepEqual(Object.keys(info.go).sort(), ["arch", "os", "version"]);
});

Deno.test("cli: generate private-key writes a key file headscale and we both read", async () => {
  for (const argv of [["generate", "private-key"], ["gen", "private-key"]]) {
    const io = captureIO();
    assert.deepEqual(await runCli(argv, io), 0);
    assert.deepEqual(parsePrivateKeyText(io.out[0], "stdout").length, 32);
  }
  const io = captureIO();
  assert.deepEqual(await runCli(["generate", "private-key", "-o", "json"], io), 0);
  assert.match(JSON.parse(io.out[0]).private_key, /^privkey:[0-9a-f]{64}$/);
});

Deno.test("cli: configtest passes headscale's example config", async () => {
  const io = captureIO();
  assert.deepEqual(await runCli(["configtest", "-c", EXAMPLE.pathname], io), 0);
  assert.match(io.out[0], /Configuration is valid/);
  assert.deepEqual(io.err.filter((l) => l.includes("grpc_listen_addr")).length, 1);
});

Deno.test("GET /version answers headscale's JSON", () => {
  let status = 0;
  let body = "";
  const headers: Record<string, string> = {};
  const res = {
    writeHead(s: number, h: Record<string, string>) {
      status = s;
      Object.assign(headers, h);
    },
    end(b: string) {
      body = b;
    },
  };
  // deno-lint-ignore no-explicit-any
  versionHandler()({} as IncomingMessage, res as any);
  assert.deepEqual(status, 200);
  assert.deepEqual(headers["content-type"], "application/json");
  const info = JSON.parse(body);
  assert.deepEqual(typeof info.version, "string");
  assert.deepEqual(typeof info.go.os, "string");
  assert.deepEqual(info.dirty, false);
});
