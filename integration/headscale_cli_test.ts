/**
 * headscale's own Go CLI (v0.29.2, built by scripts/install_headscale_cli.sh) against our real
 * server, unchanged: over the unix socket (plain gRPC on h2c) and remotely (gRPC over TLS with
 * one of our API keys). What one CLI writes, the other reads.
 */
import assert from "node:assert/strict";
import { freePort, startServer } from "../tests/helpers/server_process.ts";

const ROOT = new URL("../", import.meta.url).pathname;
const decode = (b: Uint8Array) => new TextDecoder().decode(b);

async function goCli(): Promise<string | undefined> {
  const explicit = Deno.env.get("HEADSCALE_GO_CLI");
  if (explicit) return explicit;
  const out = await new Deno.Command("bash", {
    args: [`${ROOT}scripts/install_headscale_cli.sh`],
    stdout: "piped",
    stderr: "inherit",
  }).output();
  return out.success ? decode(out.stdout).trim() : undefined;
}

async function run(cmd: string, args: string[], env: Record<string, string> = {}) {
  const out = await new Deno.Command(cmd, { args, env, stdout: "piped", stderr: "piped" }).output();
  return { code: out.code, stdout: decode(out.stdout), stderr: decode(out.stderr) };
}

async function openssl(args: string[], cwd: string): Promise<void> {
  const r = await new Deno.Command("openssl", { args, cwd, stdout: "null", stderr: "piped" })
    .output();
  if (!r.success) throw new Error(`openssl ${args[0]}: ${decode(r.stderr)}`);
}

/** A throwaway CA and a certificate for 127.0.0.1 it signed. */
async function testCertificate(dir: string): Promise<void> {
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
  await openssl([
    "req",
    "-x509",
    ...ec,
    "-keyout",
    "ca.key",
    "-out",
    "ca.pem",
    "-days",
    "1",
    "-subj",
    "/CN=hsd test CA",
  ], dir);
  await openssl(
    ["req", ...ec, "-keyout", "tls.key", "-out", "tls.csr", "-subj", "/CN=127.0.0.1"],
    dir,
  );
  await Deno.writeTextFile(`${dir}/ext.cnf`, "subjectAltName=IP:127.0.0.1,DNS:localhost\n");
  await openssl([
    "x509",
    "-req",
    "-in",
    "tls.csr",
    "-CA",
    "ca.pem",
    "-CAkey",
    "ca.key",
    "-CAcreateserial",
    "-out",
    "tls.pem",
    "-days",
    "1",
    "-extfile",
    "ext.cnf",
  ], dir);
}

const goCliPath = await goCli();

Deno.test({
  name: "headscale's Go CLI works against our server over the unix socket and remotely",
  ignore: goCliPath === undefined,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "hsd-gocli-" });
    await testCertificate(dir);
    const grpcPort = freePort();
    const server = await startServer(
      dir,
      `grpc_listen_addr: 127.0.0.1:${grpcPort}\ntls_cert_path: ${dir}/tls.pem\ntls_key_path: ${dir}/tls.key\n`,
      { caCertPath: `${dir}/ca.pem` },
    );
    try {
      // Our server speaks https now; our CLI uses the unix socket either way.
      const ours = (...args: string[]) =>
        run(Deno.execPath(), ["run", "-A", `${ROOT}cli.ts`, "-c", server.configPath, ...args]);
      // headscale's CLI reads only the keys it needs from its own small config.
      const goConfig = `${dir}/go-cli.yaml`;
      await Deno.writeTextFile(goConfig, `unix_socket: ${server.socket}\ncli:\n  timeout: 10s\n`);
      const theirs = (args: string[], env: Record<string, string> = {}) =>
        run(goCliPath!, ["-c", goConfig, ...args], {
          HOME: dir,
          PATH: Deno.env.get("PATH") ?? "",
          ...env,
        });

      assert.equal((await ours("users", "create", "alice", "-e", "alice@example.com")).code, 0);
      const created = await ours(
        "preauthkeys",
        "create",
        "-u",
        "alice",
        "--reusable",
        "-o",
        "json",
      );
      assert.equal(created.code, 0, created.stderr);

      // Theirs reads what ours wrote.
      const users = await theirs(["users", "list", "-o", "json"]);
      assert.equal(users.code, 0, users.stderr);
      const listed = JSON.parse(users.stdout) as { name: string; email: string }[];
      assert.deepEqual(listed.map((u) => [u.name, u.email]), [["alice", "alice@example.com"]]);
      const keys = await theirs(["preauthkeys", "list", "-o", "json"]);
      assert.equal(keys.code, 0, keys.stderr);
      const keyRows = JSON.parse(keys.stdout) as {
        reusable: boolean;
        user: { name: string };
        key: string;
      }[];
      assert.equal(keyRows.length, 1);
      assert.equal(keyRows[0].reusable, true);
      assert.equal(keyRows[0].user.name, "alice");
      const table = await theirs(["users", "list"]);
      assert.match(table.stdout, /alice/);

      // Ours reads what theirs wrote.
      const made = await theirs(["users", "create", "bob", "-o", "json"]);
      assert.equal(made.code, 0, made.stderr);
      const ourList = await ours("users", "list", "-o", "json");
      assert.deepEqual(
        (JSON.parse(ourList.stdout) as { name: string }[]).map((u) => u.name).sort(),
        ["alice", "bob"],
      );
      const bad = await theirs(["users", "create", "not valid!"]);
      assert.notEqual(bad.code, 0, "an invalid name is refused");

      // Remote mode: gRPC over TLS with one of our API keys, as headscale's CLI does it.
      const apiKey = (await ours("apikeys", "create")).stdout.trim();
      assert.match(apiKey, /^hskey-api-/);
      const remote = {
        HEADSCALE_CLI_ADDRESS: `127.0.0.1:${grpcPort}`,
        SSL_CERT_FILE: `${dir}/ca.pem`,
      };
      const remoteUsers = await theirs(["users", "list", "-o", "json"], {
        ...remote,
        HEADSCALE_CLI_API_KEY: apiKey,
      });
      assert.equal(remoteUsers.code, 0, remoteUsers.stderr);
      assert.equal((JSON.parse(remoteUsers.stdout) as unknown[]).length, 2);
      const insecure = await theirs(["nodes", "list", "-o", "json"], {
        HEADSCALE_CLI_ADDRESS: `127.0.0.1:${grpcPort}`,
        HEADSCALE_CLI_API_KEY: apiKey,
        HEADSCALE_CLI_INSECURE: "true",
      });
      assert.equal(insecure.code, 0, insecure.stderr);
      const wrong = await theirs(["users", "list"], {
        ...remote,
        HEADSCALE_CLI_API_KEY: "hskey-api-000000000000-" + "0".repeat(64),
      });
      assert.notEqual(wrong.code, 0);
      assert.match(wrong.stdout + wrong.stderr, /Unauthenticated|API key/i);
    } finally {
      await server.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});
