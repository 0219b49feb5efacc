/**
 * headscale-deno server entry: `deno task start [-c config.yaml]`. Without a config file it runs
 * on embedded defaults (SQLite under ./data, listening on 127.0.0.1:8080).
 */
import { parseArgs } from "node:util";
import { ConfigError, loadConfig } from "./lib/config/load.ts";
import { createLogger } from "./lib/log/log.ts";
import { startServer } from "./lib/server/server.ts";
import { denoIO, isCliInvocation, runCli } from "./lib/cli/run.ts";

async function main(): Promise<number> {
  // One binary: `headscale-deno users list` is the CLI, `headscale-deno [serve]` the server.
  if (isCliInvocation(Deno.args)) return await runCli(Deno.args, denoIO());
  let args;
  try {
    args = parseArgs({
      args: Deno.args,
      options: { config: { type: "string", short: "c" }, help: { type: "boolean", short: "h" } },
      allowPositionals: true,
    });
  } catch (e) {
    console.error(`headscale-deno: ${(e as Error).message}`);
    return 2;
  }
  if (args.values.help) {
    console.log(
      "usage: headscale-deno [serve] [-c config.yaml]\n       headscale-deno <command> … (users, nodes, preauthkeys, apikeys, auth, policy, generate, configtest, version, migrate, help)",
    );
    return 0;
  }
  const extra = args.positionals.filter((p, i) => !(i === 0 && p === "serve"));
  if (extra.length > 0) {
    console.error(`headscale-deno: unknown command "${extra[0]}" (try headscale-deno help)`);
    return 2;
  }

  let loaded;
  try {
    loaded = loadConfig({ path: args.values.config });
  } catch (e) {
    if (e instanceof ConfigError) {
      console.error(`headscale-deno: configuration error:\n${e.message}`);
      return 1;
    }
    throw e;
  }
  const { config } = loaded;
  const log = createLogger({ level: config.log.level, format: config.log.format });
  log.info("starting headscale-deno", { config: loaded.path ?? "(embedded defaults)" });
  for (const w of loaded.warnings) log.warn(w);

  let server;
  try {
    server = await startServer(config, log);
  } catch (e) {
    // Startup problems (bad policy, database, ports in use) are the user's to fix: one clear line.
    log.error("cannot start", { error: e });
    console.error(`headscale-deno: cannot start: ${(e as Error).message}`);
    return 1;
  }
  const stopped = Promise.withResolvers<void>();
  const stop = (signal: string) => {
    log.info("shutting down", { signal });
    stopped.resolve();
  };
  Deno.addSignalListener("SIGINT", () => stop("SIGINT"));
  Deno.addSignalListener("SIGTERM", () => stop("SIGTERM"));
  await stopped.promise;
  await server.close();
  return 0;
}

if (import.meta.main) Deno.exit(await main());
