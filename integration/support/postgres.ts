/**
 * A PostgreSQL server of a test's own (scripts/pg_test_server.sh on a free port, data in the
 * run's work directory), stopped and removed when the harness closes: no database is shared
 * with another run or with the unit tests' server.
 *
 * ```ts
 * const pg = await startPostgres(h);              // undefined (with the reason) when impossible
 * const server = await startControlServer(h, { postgres: pg.settings });
 * ```
 */
import { fileURLToPath } from "node:url";
import { type Harness, runCommand } from "../harness.ts";
import { freeTcpPort, type PostgresSettings } from "./server_config.ts";

const SCRIPT = fileURLToPath(new URL("../../scripts/pg_test_server.sh", import.meta.url));

/** Why no PostgreSQL server can be started here, or undefined. */
export async function postgresSkipReason(): Promise<string | undefined> {
  const found = await runCommand([
    "bash",
    "-c",
    "ls /usr/lib/postgresql/*/bin/initdb || command -v pg_config",
  ]);
  return found.success ? undefined : "no PostgreSQL server binaries (apt-get install postgresql)";
}

export async function startPostgres(harness: Harness): Promise<{ settings: PostgresSettings }> {
  const port = freeTcpPort();
  // The postgres OS user must reach the data directory: not the 0700 work directory.
  const dir = await Deno.makeTempDir({ prefix: `hsd-it-pg-${harness.network.index}-` });
  await Deno.chmod(dir, 0o755);
  const env = { HEADSCALE_PG_TEST_DIR: `${dir}/pg` };
  const pg = (action: string) =>
    runCommand([SCRIPT, String(port), action], {
      env: { ...Deno.env.toObject(), ...env },
      timeoutMs: 60_000,
    });
  harness.onClose(async () => {
    await pg("stop");
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  });
  const started = await pg("start");
  if (!started.success) {
    throw new Error(
      `scripts/pg_test_server.sh ${port} failed:\n${started.stderr}${started.stdout}`,
    );
  }
  return {
    settings: {
      host: "127.0.0.1",
      port,
      name: "headscale_test",
      user: "headscale_test",
      pass: "headscale_test",
    },
  };
}
