/**
 * Files named in the configuration: a missing or broken one stops the start with one line naming
 * the key and the file (issue 8), before the database or any listener is opened.
 */
import assert from "node:assert/strict";
import { loadConfig } from "../lib/config/load.ts";
import { silentLogger } from "../lib/log/log.ts";
import { startServer } from "../lib/server/server.ts";
import { freePort, SERVER_FLAGS, writeConfig } from "./helpers/server_process.ts";

const ROOT = new URL("../", import.meta.url).pathname;

async function startError(dir: string, extra: string): Promise<string> {
  const { config } = loadConfig({ path: writeConfig(dir, freePort(), extra) });
  try {
    const server = await startServer(config, silentLogger());
    await server.close();
  } catch (e) {
    return (e as Error).message;
  }
  throw new Error("the server started");
}

Deno.test("startup: a missing TLS, policy or extra records file names its key and the file", async () => {
  const dir = await Deno.makeTempDir({ prefix: "hsd-startup-" });
  try {
    const missing = (name: string) => `${dir}/${name}`;
    assert.equal(
      await startError(dir, `tls_cert_path: ${missing("cert.pem")}\ntls_key_path: ${dir}/key.pem`),
      `tls_cert_path: cannot read ${missing("cert.pem")}: No such file or directory`,
    );
    await Deno.writeTextFile(`${dir}/cert.pem`, "not read further");
    assert.equal(
      await startError(dir, `tls_cert_path: ${dir}/cert.pem\ntls_key_path: ${missing("key.pem")}`),
      `tls_key_path: cannot read ${missing("key.pem")}: No such file or directory`,
    );
    assert.equal(
      await startError(dir, `policy:\n  path: ${missing("policy.hujson")}`),
      `policy.path: cannot read ${missing("policy.hujson")}: No such file or directory`,
    );
    assert.equal(
      await startError(dir, `dns:\n  extra_records_path: ${missing("records.json")}`),
      `dns.extra_records_path: cannot read ${missing("records.json")}: No such file or directory`,
    );
    await Deno.writeTextFile(`${dir}/records.json`, '{"name": "a"}');
    assert.equal(
      await startError(dir, `dns:\n  extra_records_path: ${dir}/records.json`),
      `dns.extra_records_path: ${dir}/records.json: expected a JSON array of records`,
    );
    assert.equal(
      [...Deno.readDirSync(dir)].filter((e) => e.name.startsWith("db.sqlite")).length,
      0,
      "nothing was opened before the files were checked",
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("startup: main.ts prints the missing file as one line and exits 1", async () => {
  const dir = await Deno.makeTempDir({ prefix: "hsd-startup-" });
  try {
    const path = writeConfig(dir, freePort(), `dns:\n  extra_records_path: ${dir}/gone.json`);
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", ...SERVER_FLAGS, `${ROOT}main.ts`, "-c", path],
      cwd: dir,
      stdout: "null",
      stderr: "piped",
    }).output();
    assert.equal(out.code, 1);
    const stderr = new TextDecoder().decode(out.stderr);
    assert.ok(
      stderr.includes(
        `headscale-deno: cannot start: dns.extra_records_path: cannot read ${dir}/gone.json: No such file or directory\n`,
      ),
      stderr,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
