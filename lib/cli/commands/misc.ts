/** Top-level commands: configtest (local), version (local), generate (local) and health (server). */
import { HealthResponseSchema } from "../../../gen/headscale/v1/headscale_pb.ts";
import { ConfigError, loadConfig } from "../../config/load.ts";
import type { CommandSpec } from "../command.ts";
import { CliError } from "../errors.ts";
import { messageJson } from "../output.ts";
import { formatVersion, versionInfo } from "../../version.ts";

export const configTest: CommandSpec = {
  name: "configtest",
  summary: "Check the configuration file and exit (no server needed)",
  run(ctx) {
    let loaded;
    try {
      loaded = loadConfig({ path: ctx.configPath, env: ctx.io.env });
    } catch (e) {
      if (!(e instanceof ConfigError)) throw e;
      const problems = e.message.split("\n").filter((l) => l.trim() !== "");
      const which = ctx.configPath ?? ctx.io.env.HEADSCALE_CONFIG ?? "the configuration";
      if (problems.length === 1) throw new CliError(`configuration error: ${problems[0]}`);
      throw new CliError(`${which} has ${problems.length} problems`, problems);
    }
    if (ctx.output === "") {
      for (const w of loaded.warnings) ctx.io.printError(`Warning: ${w}`);
    }
    const source = loaded.path ?? "built-in defaults";
    return Promise.resolve({
      data: { valid: true, path: loaded.path, warnings: loaded.warnings },
      human: `Configuration is valid (${source})`,
    });
  },
};

export const version: CommandSpec = {
  name: "version",
  summary: "Print the version",
  run() {
    const info = versionInfo();
    return Promise.resolve({ data: info, human: formatVersion(info) });
  },
};

export const health: CommandSpec = {
  name: "health",
  summary: "Check the server's health (exit status 1 when unhealthy)",
  async run(ctx) {
    const response = await ctx.call("checking health", (c) => c.health({}));
    const ok = response.databaseConnectivity;
    return {
      data: messageJson(HealthResponseSchema, response),
      human: ok ? "healthy: database reachable" : "unhealthy: database unreachable",
      exitCode: ok ? 0 : 1,
    };
  },
};
