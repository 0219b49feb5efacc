import assert from "node:assert/strict";
import { createServer } from "node:http";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { HeadscaleService } from "../gen/headscale/v1/headscale_pb.ts";
import { CliError } from "../lib/cli/errors.ts";
import { describeCallError } from "../lib/cli/rpc_errors.ts";
import { type CliTarget, createCliTransport, resolveTarget } from "../lib/cli/transport.ts";

const cli = (address: string, apiKey = "hskey-api-x", insecure = false) => ({
  cli: { address, apiKey, insecure, timeoutMs: 5000 },
  unixSocket: "/run/hs.sock",
});

Deno.test("cli transport: the unix socket by default, remote targets from cli.address", () => {
  assert.deepEqual(resolveTarget(cli("", "")), { kind: "unix", socketPath: "/run/hs.sock" });
  assert.deepEqual(resolveTarget(cli("hs.example.com:50443")), {
    kind: "grpc",
    address: "hs.example.com:50443",
    apiKey: "hskey-api-x",
    insecure: false,
  });
  assert.equal(resolveTarget(cli("[::1]:50443")).kind, "grpc");
  assert.deepEqual(resolveTarget(cli("https://hs.example.com/", "k", true)), {
    kind: "connect",
    baseUrl: "https://hs.example.com",
    apiKey: "k",
    insecure: true,
  });
  assert.equal(resolveTarget(cli("http://127.0.0.1:8080")).kind, "connect");
  assert.equal(resolveTarget(cli("http://hs.example.com", "k", true)).kind, "connect");
});

Deno.test("cli transport: unusable remote settings are refused before connecting", () => {
  const refused = (c: ReturnType<typeof cli>, pattern: RegExp) =>
    assert.throws(() => resolveTarget(c), (e) => e instanceof CliError && pattern.test(e.message));
  refused(cli("hs.example.com:50443", ""), /HEADSCALE_CLI_API_KEY/);
  refused(cli("hs.example.com"), /must be host:port or an https:\/\/ URL/);
  refused(cli("http://hs.example.com:8080"), /refusing to send the API key over plain http/);
  refused(cli("https://exa mple.com"), /not a valid URL/);
});

Deno.test("cli transport: failures become one actionable sentence", () => {
  const unix: CliTarget = { kind: "unix", socketPath: "/run/hs.sock" };
  const grpc: CliTarget = { kind: "grpc", address: "hs:50443", apiKey: "k", insecure: false };
  const withCause = (code: string) =>
    new ConnectError(
      "x",
      Code.Internal,
      undefined,
      undefined,
      Object.assign(new Error(code), { code }),
    );
  assert.equal(
    describeCallError(withCause("ENOENT"), unix, 5000),
    "cannot reach the server at /run/hs.sock: is it running?",
  );
  assert.equal(
    describeCallError(withCause("ECONNREFUSED"), grpc, 5000),
    "cannot reach the server at hs:50443: is it running?",
  );
  assert.match(describeCallError(withCause("EACCES"), unix, 5000), /^permission denied/);
  assert.match(
    describeCallError(withCause("UNABLE_TO_VERIFY_LEAF_SIGNATURE"), grpc, 5000),
    /^TLS with hs:50443 failed \(UNABLE_TO_VERIFY_LEAF_SIGNATURE\).*cli\.insecure/,
  );
  assert.equal(
    describeCallError(new ConnectError("user 7 not found", Code.NotFound), unix, 5000),
    "user 7 not found",
  );
  assert.match(
    describeCallError(
      new ConnectError("invalid or missing API key", Code.Unauthenticated),
      grpc,
      1,
    ),
    /^the server refused the API key \(invalid or missing API key\)/,
  );
  assert.equal(
    describeCallError(new ConnectError("slow", Code.DeadlineExceeded), unix, 5000),
    "no answer from /run/hs.sock within 5s (cli.timeout)",
  );
});

Deno.test("cli transport: a server that never answers hits cli.timeout", async () => {
  const dir = await Deno.makeTempDir({ prefix: "hs-cli-" });
  const socketPath = `${dir}/silent.sock`;
  const server = createServer(() => {/* never answers */});
  await new Promise<void>((resolve) => server.listen(socketPath, resolve));
  try {
    const target: CliTarget = { kind: "unix", socketPath };
    const client = createClient(HeadscaleService, createCliTransport(target, 200));
    const error = await client.health({}).then(() => null, (e) => e);
    assert.ok(error, "the call must fail");
    assert.equal(
      describeCallError(error, target, 200),
      `no answer from ${socketPath} within 0.2s (cli.timeout)`,
    );
  } finally {
    await new Promise((resolve) => {
      server.close(resolve);
      server.closeAllConnections();
    });
    await Deno.remove(dir, { recursive: true });
  }
});
