/**
 * The CLI against a real API server: the management service over a real store and state, served
 * on a unix socket in a temp dir (and on TCP with API keys for remote mode). Most cases run the
 * CLI in-process through runCli with captured stdio; a few run `cli.ts` as a subprocess.
 */
import assert from "node:assert/strict";
import { createServer, type Server } from "node:http";
import { createSecureServer, type Http2SecureServer } from "node:http2";
import { fileURLToPath } from "node:url";
import { createApiHandler } from "../lib/api/server.ts";
import type { PolicyApi } from "../lib/api/service.ts";
import { AuthRequestRegistry, type AuthRequests } from "../lib/auth_requests/registry.ts";
import { silentLogger } from "../lib/log/log.ts";
import { InvalidArgumentError, NotFoundError } from "../lib/state/errors.ts";
import { State } from "../lib/state/state.ts";
import { openStore } from "../lib/store/mod.ts";
import type { CliIO } from "../lib/cli/command.ts";
import { runCli } from "../lib/cli/run.ts";
import { openMemoryState } from "./helpers/memory_state.ts";

const CLI = fileURLToPath(new URL("../cli.ts", import.meta.url));
const MAIN = fileURLToPath(new URL("../main.ts", import.meta.url));
const hex32 = (byte: number) => byte.toString(16).padStart(2, "0").repeat(32);

interface TestServer {
  dir: string;
  socket: string;
  config: string;
  state: State;
  /** Listens on TCP too, requiring API keys; returns host:port. */
  listenTcp(): Promise<string>;
  close(): Promise<void>;
}

/**
 * Auth ids a test double knows: registering one creates a node for the user. Kinds (the API plugs
 * in debug nodes) go to an empty registry.
 */
function authRequestsDouble(state: State): AuthRequests {
  let next = 1;
  const registry = new AuthRequestRegistry();
  return {
    kind: (kind, handler) => registry.kind(kind, handler),
    list: () => registry.list(),
    register(authId, userId) {
      if (authId !== "waiting-1") throw new NotFoundError(`no pending registration ${authId}`);
      const n = next++;
      return state.registerNode({
        machineKey: `mkey:${hex32(0x10 + n)}`,
        nodeKey: `nodekey:${hex32(0x20 + n)}`,
        hostname: `host-${n}`,
        hostinfo: null,
        userId,
        tags: [],
        authKeyId: null,
        method: "cli",
        ephemeral: false,
        expiry: null,
      });
    },
    approve: (id) => Promise.reject(new NotFoundError(`no pending registration ${id}`)),
    reject: (id) => Promise.reject(new NotFoundError(`no pending registration ${id}`)),
  };
}

/** A database-mode policy held in memory; anything that is not JSON is refused. */
function policyDouble(): PolicyApi {
  let current = { policy: "", updatedAt: null as Date | null };
  const validate = (text: string) => {
    try {
      JSON.parse(text);
    } catch {
      throw new InvalidArgumentError("policy is not valid JSON");
    }
  };
  return {
    get: () => Promise.resolve(current),
    set(policy) {
      validate(policy);
      current = { policy, updatedAt: new Date() };
      return Promise.resolve(current);
    },
    check(policy) {
      validate(policy);
      return Promise.resolve();
    },
  };
}

async function startServer(): Promise<TestServer> {
  const dir = await Deno.makeTempDir({ prefix: "hs-cli-" });
  const socket = `${dir}/headscale.sock`;
  const config = `${dir}/config.yaml`;
  await Deno.writeTextFile(config, `unix_socket: ${socket}\ncli:\n  timeout: 10s\n`);
  const { store, state } = await openMemoryState();
  const deps = {
    state,
    log: silentLogger(),
    ping: () => store.ping(),
    authRequests: authRequestsDouble(state),
    policy: policyDouble(),
  };
  const servers: (Server | Http2SecureServer)[] = [];
  const local = createServer(createApiHandler({ ...deps, requireApiKey: false }));
  await new Promise<void>((resolve) => local.listen(socket, resolve));
  servers.push(local);
  return {
    dir,
    socket,
    config,
    state,
    async listenTcp() {
      const remote = createServer(createApiHandler({ ...deps, requireApiKey: true }));
      await new Promise<void>((resolve) => remote.listen(0, "127.0.0.1", resolve));
      servers.push(remote);
      return `127.0.0.1:${(remote.address() as { port: number }).port}`;
    },
    async close() {
      for (const s of servers) {
        await new Promise((resolve) => {
          s.close(resolve);
          if ("closeAllConnections" in s) s.closeAllConnections();
        });
      }
      await state.close();
      await store.close();
      await Deno.remove(dir, { recursive: true });
    },
  };
}

interface Captured {
  code: number;
  out: string;
  err: string;
  asked: string[];
}

/** Runs the CLI in-process with captured output and a scripted terminal. */
async function cli(
  args: string[],
  opts: { env?: Record<string, string>; tty?: boolean; answers?: string[] } = {},
): Promise<Captured> {
  const out: string[] = [];
  const err: string[] = [];
  const asked: string[] = [];
  const answers = [...(opts.answers ?? [])];
  const io: CliIO = {
    print: (t) => out.push(t),
    printError: (t) => err.push(t),
    ask: (q) => {
      asked.push(q);
      return Promise.resolve(answers.shift() ?? null);
    },
    stdinIsTerminal: opts.tty ?? false,
    stdoutIsTerminal: false,
    env: opts.env ?? {},
    now: () => new Date(),
  };
  const code = await runCli(args, io);
  return { code, out: out.join("\n"), err: err.join("\n"), asked };
}

function ok(r: Captured, what: string): Captured {
  assert.equal(r.code, 0, `${what}: exit ${r.code}, stderr: ${r.err}`);
  return r;
}

Deno.test("cli e2e: users create, list, rename and destroy over the unix socket", async () => {
  const s = await startServer();
  const c = ["-c", s.config];
  try {
    const created = ok(
      await cli([...c, "users", "create", "alice", "-e", "a@example.com"]),
      "create",
    );
    assert.equal(created.out, "User created");
    const asJson = ok(
      await cli([...c, "users", "create", "bob", "-d", "Bob B", "-o", "json"]),
      "create json",
    );
    const bob = JSON.parse(asJson.out);
    assert.equal(bob.name, "bob");
    assert.equal(bob.displayName, "Bob B");
    assert.equal(bob.id, "2");

    const table = ok(await cli([...c, "users", "list"]), "list").out.split("\n");
    assert.match(table[0], /^ID \| Name +\| Username \| Email +\| Created$/);
    assert.match(
      table[1],
      /^1 +\| +\| alice +\| a@example\.com \| \d{4}-\d\d-\d\d \d\d:\d\d:\d\d$/,
    );
    assert.match(table[2], /^2 +\| Bob B \| bob /);
    assert.equal(table.length, 3);

    const filtered = JSON.parse(
      ok(await cli([...c, "users", "ls", "-n", "bob", "-o", "json"]), "ls").out,
    );
    assert.deepEqual(filtered.map((u: { name: string }) => u.name), ["bob"]);
    const line = ok(await cli([...c, "user", "show", "-o", "json-line"]), "json-line").out;
    assert.equal(line.split("\n").length, 1);
    assert.equal(JSON.parse(line).length, 2);
    assert.match(
      ok(await cli([...c, "users", "list", "-o", "yaml"]), "yaml").out,
      /- id: "1"\n {2}name: alice/,
    );

    ok(await cli([...c, "users", "rename", "-n", "alice", "-r", "alicia"]), "rename");
    assert.equal(s.state.findUser(1).name, "alicia");

    const dup = await cli([...c, "users", "create", "bob"]);
    assert.equal(dup.code, 1);
    assert.equal(dup.err, 'Error: creating user: user "bob" already exists');
    const bad = await cli([...c, "users", "create", "bad name", "-o", "json"]);
    assert.equal(bad.code, 1);
    assert.match(JSON.parse(bad.err).error, /^creating user: invalid user name "bad name"/);

    // On a terminal, destroy asks first; "n" keeps the user.
    const kept = ok(
      await cli([...c, "users", "destroy", "-i", "2"], { tty: true, answers: ["n"] }),
      "keep",
    );
    assert.equal(kept.asked.length, 1);
    assert.match(kept.asked[0], /remove the user "bob" \(2\)/);
    assert.equal(kept.out, "User not destroyed");
    assert.equal(s.state.listUsers().length, 2);
    const gone = ok(
      await cli([...c, "users", "destroy", "-n", "bob"], { tty: true, answers: ["yes"] }),
      "yes",
    );
    assert.equal(gone.out, "User destroyed");
    assert.equal(s.state.listUsers().length, 1);
    // --force (or no terminal) does not ask.
    ok(await cli([...c, "users", "create", "carol"]), "carol");
    const forced = ok(
      await cli([...c, "users", "destroy", "-n", "carol", "--force"], { tty: true }),
      "force",
    );
    assert.deepEqual(forced.asked, []);
    assert.equal(s.state.listUsers().length, 1);

    const missing = await cli([...c, "users", "destroy", "-n", "nobody", "--force"]);
    assert.equal(missing.code, 1);
    assert.equal(missing.err, 'Error: no user "nobody"');
    const neither = await cli([...c, "users", "destroy"]);
    assert.equal(neither.code, 2);
    assert.match(
      neither.err,
      /--identifier or --name is required\nRun "headscale-deno users destroy --help"/,
    );
  } finally {
    await s.close();
  }
});

Deno.test("cli e2e: pre-auth keys and API keys", async () => {
  const s = await startServer();
  const c = ["-c", s.config];
  try {
    ok(await cli([...c, "users", "create", "alice"]), "user");
    const before = Date.now();
    const created = ok(
      await cli([
        ...c,
        "preauthkeys",
        "create",
        "-u",
        "alice",
        "--reusable",
        "-e",
        "2h",
        "-o",
        "json",
      ]),
      "create",
    );
    const key = JSON.parse(created.out);
    assert.match(key.key, /^hskey-auth-[0-9a-f]{12}-[0-9a-f]{64}$/, "the full key, once");
    assert.equal(key.reusable, true);
    assert.equal(key.user.name, "alice");
    const expires = Date.parse(key.expiration) - before;
    assert.ok(expires > 7_100_000 && expires < 7_300_000, `2h from now, got ${expires} ms`);

    const plain = ok(
      await cli([...c, "pre", "create", "-u", "1", "--tags", "tag:web,tag:db", "--ephemeral"]),
      "by id",
    );
    assert.match(
      plain.out,
      /^hskey-auth-[0-9a-f]{12}-[0-9a-f]{64}$/,
      "human output is just the key",
    );
    const defaultExpiry = s.state.listPreAuthKeys()[1].expiration!.getTime() - Date.now();
    assert.ok(defaultExpiry > 3_500_000 && defaultExpiry <= 3_600_000, "1h by default");

    const table = ok(await cli([...c, "preauthkeys", "list"]), "list").out.split("\n");
    assert.match(
      table[0],
      /^ID \| Key\/Prefix +\| Reusable \| Ephemeral \| Used +\| Expiration +\| Created +\| Owner$/,
    );
    assert.match(
      table[1],
      /^1 +\| hskey-auth-[0-9a-f]{12}-\*\*\* \| true +\| false +\| false \| [\d-]+ [\d:]+ +\| [\d-]+ [\d:]+ \| alice$/,
    );
    assert.match(table[2], /^2 .*\| false +\| true +\| false \| .*\| tag:db$/);
    assert.match(table[3], /\| tag:web$/);
    assert.doesNotMatch(table.join("\n"), /[0-9a-f]{64}/, "listed keys stay masked");

    ok(await cli([...c, "preauthkeys", "expire", "-i", "1"]), "expire");
    assert.ok(s.state.getPreAuthKey(1).expiration!.getTime() <= Date.now());
    ok(await cli([...c, "preauthkeys", "delete", "-i", "2"]), "delete");
    assert.equal(s.state.listPreAuthKeys().length, 1);
    const unknownUser = await cli([...c, "preauthkeys", "create", "-u", "zed"]);
    assert.equal(unknownUser.code, 1);
    assert.equal(unknownUser.err, 'Error: no user "zed"');
    const badTag = await cli([...c, "preauthkeys", "create", "--tags", "web"]);
    assert.equal(badTag.code, 1);
    assert.match(badTag.err, /^Error: creating pre-auth key: invalid tag "web"/);

    const apiKey = ok(await cli([...c, "apikeys", "create", "-e", "1w"]), "apikey").out;
    assert.match(apiKey, /^hskey-api-[0-9a-f]{12}-[0-9a-f]{64}$/);
    assert.ok(await s.state.checkApiKey(apiKey));
    const prefix = apiKey.slice("hskey-api-".length, "hskey-api-".length + 12);
    const keys = JSON.parse(ok(await cli([...c, "apikeys", "list", "-o", "json"]), "list").out);
    assert.equal(keys.length, 1);
    assert.equal(keys[0].prefix, `hskey-api-${prefix}-***`);
    const week = Date.parse(keys[0].expiration) - Date.now();
    assert.ok(week > 6.9 * 86_400_000 && week <= 7 * 86_400_000);
    ok(await cli([...c, "apikeys", "expire", "-p", prefix]), "expire by prefix");
    assert.equal(await s.state.checkApiKey(apiKey), false);
    const both = await cli([...c, "apikeys", "delete", "-p", prefix, "-i", "1"]);
    assert.equal(both.code, 2);
    ok(await cli([...c, "apikeys", "delete", "-i", "1"]), "delete");
    assert.equal(s.state.listApiKeys().length, 0);
  } finally {
    await s.close();
  }
});

Deno.test("cli e2e: nodes, routes, auth, policy and health", async () => {
  const s = await startServer();
  const c = ["-c", s.config];
  try {
    const empty = ok(await cli([...c, "nodes", "list"]), "empty list");
    assert.match(
      empty.out,
      /^ID \| Hostname \| Name \| MachineKey \| NodeKey \| User \| Tags \| IP addresses \| Ephemeral \| Last seen \| Expiration \| Connected \| Expired$/,
    );
    assert.equal(ok(await cli([...c, "nodes", "list", "-o", "json"]), "json").out, "[]");

    ok(await cli([...c, "users", "create", "alice"]), "user");
    const registered = ok(
      await cli([...c, "auth", "register", "--auth-id", "waiting-1", "-u", "alice"]),
      "register",
    );
    assert.equal(registered.out, "Node host-1 registered");
    const unknown = await cli([...c, "auth", "approve", "--auth-id", "nope"]);
    assert.equal(unknown.code, 1);
    assert.equal(unknown.err, "Error: approving auth request: no pending registration nope");

    const rows = ok(await cli([...c, "nodes", "list", "-u", "alice"]), "list").out.split("\n");
    assert.match(
      rows[1],
      /^1 +\| host-1 +\| host-1 \| \[\S{5}\] +\| \[\S{5}\] \| alice \| +\| 100\.64\.\d+\.\d+ +\| false +\| +\| .* \| offline +\| no$/,
    );

    ok(await cli([...c, "nodes", "tag", "-i", "1", "-t", "tag:web"]), "tag");
    assert.deepEqual(s.state.findNode(1).tags, ["tag:web"]);
    const renamed = JSON.parse(
      ok(await cli([...c, "nodes", "rename", "-i", "1", "web-1", "-o", "json"]), "rename").out,
    );
    assert.equal(renamed.givenName, "web-1");
    ok(
      await cli([...c, "nodes", "approve-routes", "-i", "1", "-r", "10.0.0.0/8,192.168.1.0/24"]),
      "routes",
    );
    assert.deepEqual(s.state.findNode(1).approvedRoutes.toSorted(), [
      "10.0.0.0/8",
      "192.168.1.0/24",
    ]);
    const routes = ok(await cli([...c, "nodes", "list-routes", "-i", "1"]), "list-routes").out
      .split("\n");
    assert.match(routes[0], /^ID \| Hostname \| Approved +\| Available \| Serving \(Primary\)$/);
    assert.match(routes[1], /^1 +\| web-1 +\| (10\.0\.0\.0\/8|192\.168\.1\.0\/24)/);

    const future = new Date(Date.now() + 86_400_000).toISOString().replace(/\.\d+Z$/, "Z");
    const later = ok(await cli([...c, "nodes", "expire", "-i", "1", "-e", future]), "expire later");
    assert.equal(later.out, "Node expiration updated");
    assert.equal(s.state.findNode(1).expiry?.toISOString().replace(/\.\d+Z$/, "Z"), future);
    const badTime = await cli([...c, "nodes", "expire", "-i", "1", "-e", "tomorrow"]);
    assert.equal(badTime.code, 2);
    assert.match(badTime.err, /RFC 3339/);
    assert.equal(
      ok(await cli([...c, "nodes", "expire", "-i", "1", "-d"]), "disable").out,
      "Node expiry disabled",
    );
    assert.equal(s.state.findNode(1).expiry, null);
    assert.equal(ok(await cli([...c, "nodes", "logout", "-i", "1"]), "now").out, "Node expired");
    assert.ok(s.state.findNode(1).expiry!.getTime() <= Date.now());

    const noNode = await cli([...c, "nodes", "delete", "-i", "99", "--force"]);
    assert.equal(noNode.code, 1);
    assert.match(noNode.err, /^Error: getting node: .*not found/);
    const deleted = ok(await cli([...c, "nodes", "delete", "-i", "1", "-o", "json"]), "delete");
    assert.deepEqual(JSON.parse(deleted.out), { Result: "Node deleted" });
    assert.equal(s.state.listNodes().length, 0);

    // Policy: set from a file, read back, check a broken one.
    const file = `${s.dir}/policy.json`;
    await Deno.writeTextFile(file, '{"acls":[]}');
    assert.equal(ok(await cli([...c, "policy", "set", "-f", file]), "set").out, "Policy updated.");
    assert.equal(ok(await cli([...c, "policy", "get"]), "get").out, '{"acls":[]}');
    assert.equal(
      JSON.parse(ok(await cli([...c, "policy", "get", "-o", "json"]), "get json").out).policy,
      '{"acls":[]}',
    );
    await Deno.writeTextFile(file, "{nope");
    const broken = await cli([...c, "policy", "check", "-f", file]);
    assert.equal(broken.code, 1);
    assert.equal(broken.err, "Error: checking policy: policy is not valid JSON");
    const noFile = await cli([...c, "policy", "check", "-f", `${s.dir}/missing.json`]);
    assert.equal(noFile.code, 1);
    assert.match(noFile.err, /^Error: reading policy file .*missing\.json: no such file$/);

    assert.deepEqual(JSON.parse(ok(await cli([...c, "health", "-o", "json"]), "health").out), {
      databaseConnectivity: true,
    });
  } finally {
    await s.close();
  }
});

Deno.test("cli e2e: remote mode sends the API key; bad keys and missing keys are clear errors", async () => {
  const s = await startServer();
  try {
    const addr = await s.listenTcp();
    const { key } = await s.state.createApiKey(null);
    const env = (apiKey: string) => ({
      HEADSCALE_CLI_ADDRESS: `http://${addr}`,
      HEADSCALE_CLI_API_KEY: apiKey,
    });
    ok(await cli(["-c", s.config, "users", "create", "remote-user"], { env: env(key) }), "create");
    assert.equal(s.state.findUser("remote-user").name, "remote-user");

    const wrong = await cli(["-c", s.config, "users", "list"], {
      env: env(`hskey-api-000000000000-${"0".repeat(64)}`),
    });
    assert.equal(wrong.code, 1);
    assert.match(
      wrong.err,
      /^Error: listing users: the server refused the API key .*HEADSCALE_CLI_API_KEY/,
    );

    const none = await cli(["-c", s.config, "users", "list"], {
      env: { HEADSCALE_CLI_ADDRESS: addr },
    });
    assert.equal(none.code, 1);
    assert.match(none.err, /cli\.api_key or HEADSCALE_CLI_API_KEY/);
  } finally {
    await s.close();
  }
});

Deno.test({
  name: "cli e2e: remote gRPC over TLS to host:port, verified unless cli.insecure",
  ignore: !(await hasOpenssl()),
  async fn() {
    const s = await startServer();
    let tls: Http2SecureServer | undefined;
    try {
      await new Deno.Command("openssl", {
        args: [
          "req",
          "-x509",
          "-newkey",
          "ec",
          "-pkeyopt",
          "ec_paramgen_curve:prime256v1",
          "-nodes",
          "-keyout",
          `${s.dir}/key.pem`,
          "-out",
          `${s.dir}/cert.pem`,
          "-days",
          "1",
          "-subj",
          "/CN=localhost",
          "-addext",
          "subjectAltName=IP:127.0.0.1",
        ],
        stdout: "null",
        stderr: "null",
      }).output();
      const store = await openStore({
        type: "sqlite",
        sqlite: { path: ":memory:", writeAheadLog: false },
      });
      const handler = createApiHandler({
        state: s.state,
        log: silentLogger(),
        requireApiKey: true,
        ping: () => store.ping(),
        authRequests: authRequestsDouble(s.state),
        policy: policyDouble(),
      });
      tls = createSecureServer({
        cert: await Deno.readTextFile(`${s.dir}/cert.pem`),
        key: await Deno.readTextFile(`${s.dir}/key.pem`),
      }, handler);
      await new Promise<void>((resolve) => tls!.listen(0, "127.0.0.1", resolve));
      const addr = `127.0.0.1:${(tls.address() as { port: number }).port}`;
      const { key } = await s.state.createApiKey(null);
      const env = { HEADSCALE_CLI_ADDRESS: addr, HEADSCALE_CLI_API_KEY: key };

      const refused = await cli(["-c", s.config, "health"], { env });
      assert.equal(refused.code, 1);
      assert.match(
        refused.err,
        /^Error: checking health: TLS with 127\.0\.0\.1:\d+ failed .*cli\.insecure/,
      );
      const health = ok(
        await cli(["-c", s.config, "health"], { env: { ...env, HEADSCALE_CLI_INSECURE: "true" } }),
        "insecure",
      );
      assert.equal(health.out, "healthy: database reachable");
      await store.close();
    } finally {
      await new Promise((resolve) => tls ? tls.close(resolve) : resolve(undefined));
      await s.close();
    }
  },
});

async function hasOpenssl(): Promise<boolean> {
  try {
    return (await new Deno.Command("openssl", { args: ["version"], stdout: "null" }).output())
      .success;
  } catch {
    return false;
  }
}

// ---- the real entry point as a subprocess

function childEnv(): Record<string, string> {
  const env: Record<string, string> = {};
  for (const name of ["HOME", "PATH", "DENO_DIR", "XDG_CACHE_HOME", "TMPDIR"]) {
    const value = Deno.env.get(name);
    if (value !== undefined) env[name] = value;
  }
  return env;
}

async function subprocess(
  args: string[],
  env: Record<string, string> = {},
): Promise<Captured> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-net",
      "--allow-read",
      "--allow-write",
      "--allow-env",
      "--allow-sys",
      CLI,
      ...args,
    ],
    clearEnv: true,
    env: { ...childEnv(), ...env },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = (b: Uint8Array) => new TextDecoder().decode(b).replace(/\n$/, "");
  return { code: out.code, out: text(out.stdout), err: text(out.stderr), asked: [] };
}

/** The real server (`main.ts`) as a subprocess with a temp config; resolves once it listens. */
async function startMain(): Promise<
  { config: string; listenAddress: string; close(): Promise<void> }
> {
  const dir = await Deno.makeTempDir({ prefix: "hs-cli-main-" });
  const config = `${dir}/config.yaml`;
  await Deno.writeTextFile(
    config,
    [
      "server_url: http://127.0.0.1:18080",
      "listen_addr: 127.0.0.1:0",
      'metrics_listen_addr: ""',
      `noise: { private_key_path: ${dir}/noise.key }`,
      `database: { type: sqlite, sqlite: { path: ${dir}/db.sqlite } }`,
      "derp: { server: { enabled: false }, urls: [], auto_update_enabled: false }",
      `unix_socket: ${dir}/headscale.sock`,
      "log: { level: info, format: json }",
    ].join("\n") + "\n",
  );
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-net",
      "--allow-read",
      "--allow-write",
      "--allow-env",
      "--allow-sys",
      MAIN,
      "-c",
      config,
    ],
    clearEnv: true,
    env: childEnv(),
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  // Read the JSON log until the main listener and the unix socket are up; keep draining after.
  const lines = child.stderr.pipeThrough(new TextDecoderStream()).getReader();
  let buffered = "";
  let listenAddress = "";
  let socketUp = false;
  const seen: string[] = [];
  while (listenAddress === "" || !socketUp) {
    const { value, done } = await lines.read();
    if (done) {
      await child.status;
      throw new Error(`main.ts exited before listening:\n${seen.join("\n")}${buffered}`);
    }
    buffered += value;
    const parts = buffered.split("\n");
    buffered = parts.pop()!;
    for (const line of parts) {
      seen.push(line);
      let entry: { msg?: string; addr?: string };
      try {
        entry = JSON.parse(line);
      } catch {
        continue;
      }
      if (entry.msg === "listening" && entry.addr) listenAddress = entry.addr;
      if (entry.msg === "management API listening" && entry.addr?.endsWith(".sock")) {
        socketUp = true;
      }
    }
  }
  const drained = (async () => {
    while (!(await lines.read()).done) { /* discard */ }
  })();
  return {
    config,
    listenAddress,
    async close() {
      child.kill("SIGTERM");
      await child.status;
      await drained;
      await Deno.remove(dir, { recursive: true });
    },
  };
}

Deno.test("cli e2e: cli.ts as a subprocess against main.ts over its unix socket", async () => {
  const s = await startMain();
  const c = ["-c", s.config];
  try {
    assert.equal(
      ok(await subprocess([...c, "users", "create", "alice"]), "create").out,
      "User created",
    );
    const users = JSON.parse(
      ok(await subprocess([...c, "users", "list", "-o", "json"]), "list").out,
    );
    assert.deepEqual(users.map((u: { id: string; name: string }) => [u.id, u.name]), [[
      "1",
      "alice",
    ]]);

    const key = ok(await subprocess([...c, "preauthkeys", "create", "-u", "alice"]), "key").out;
    assert.match(key, /^hskey-auth-[0-9a-f]{12}-[0-9a-f]{64}$/);
    const keys = ok(await subprocess([...c, "preauthkeys", "list"]), "keys").out;
    assert.match(keys, /\n1 +\| hskey-auth-[0-9a-f]{12}-\*\*\* \| false/);
    assert.ok(!keys.includes("\x1b["), "no colours when stdout is not a terminal");

    const nodes = ok(await subprocess([...c, "nodes", "list"]), "nodes").out;
    assert.equal(nodes.split("\n").length, 1, "an empty tailnet is just the header");

    const badFlag = await subprocess([...c, "users", "list", "--frobnicate"]);
    assert.equal(badFlag.code, 2);
    assert.equal(badFlag.out, "");
    assert.equal(
      badFlag.err,
      'Error: unknown flag --frobnicate\nRun "headscale-deno users list --help" for usage.',
    );

    // Remote mode against the main listener: Connect over http:// with an API key made locally.
    const apiKey = ok(await subprocess([...c, "apikeys", "create"]), "apikey").out;
    const remote = await subprocess([...c, "users", "list", "-o", "json"], {
      HEADSCALE_CLI_ADDRESS: `http://${s.listenAddress}`,
      HEADSCALE_CLI_API_KEY: apiKey,
    });
    assert.equal(JSON.parse(ok(remote, "remote").out)[0].name, "alice");
    const refused = await subprocess([...c, "users", "list"], {
      HEADSCALE_CLI_ADDRESS: `http://${s.listenAddress}`,
      HEADSCALE_CLI_API_KEY: apiKey.slice(0, -1) + (apiKey.endsWith("0") ? "1" : "0"),
    });
    assert.equal(refused.code, 1);
    assert.match(refused.err, /^Error: listing users: the server refused the API key/);
  } finally {
    await s.close();
  }
});

Deno.test("cli e2e: subprocess errors without a server, and configtest", async () => {
  const dir = await Deno.makeTempDir({ prefix: "hs-cli-" });
  try {
    const config = `${dir}/config.yaml`;
    await Deno.writeTextFile(config, `unix_socket: ${dir}/absent.sock\n`);
    const down = await subprocess(["-c", config, "nodes", "list"]);
    assert.equal(down.code, 1);
    assert.equal(down.out, "");
    assert.equal(
      down.err,
      `Error: listing nodes: cannot reach the server at ${dir}/absent.sock: is it running?`,
    );
    const downJson = await subprocess(["-c", config, "nodes", "list", "-o", "json"]);
    assert.deepEqual(JSON.parse(downJson.err), {
      error: `listing nodes: cannot reach the server at ${dir}/absent.sock: is it running?`,
    });

    const valid = ok(await subprocess(["-c", config, "configtest"]), "configtest");
    assert.equal(valid.out, `Configuration is valid (${config})`);

    const broken = `${dir}/broken.yaml`;
    await Deno.writeTextFile(broken, "server_url: ftp://x\nprefixes:\n  v4: nonsense\n");
    const invalid = await subprocess(["-c", broken, "configtest"]);
    assert.equal(invalid.code, 1);
    const lines = invalid.err.split("\n");
    assert.equal(lines[0], `Error: ${broken} has 2 problems`);
    assert.match(invalid.err, /\n {2}- server_url: must be an http/);
    assert.match(invalid.err, /\n {2}- prefixes\.v4: "nonsense" is not an IPv4 prefix/);
    const missingFile = await subprocess(["-c", `${dir}/nope.yaml`, "configtest"]);
    assert.equal(missingFile.code, 1);
    assert.match(
      missingFile.err,
      /^Error: configuration error: config file .*nope\.yaml does not exist$/,
    );
    assert.doesNotMatch(
      missingFile.err + invalid.err + down.err,
      /\bat .*\.ts:\d+/,
      "no stack traces",
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
