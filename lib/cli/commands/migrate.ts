/**
 * `migrate from-headscale --from <db.sqlite | postgres://…> [--dry-run] [--force]`: imports a
 * headscale database into the store configured here (-c), with the server stopped. Local: it
 * needs no running server. See lib/migrate/ and docs/install.md.
 */
import { ConfigError, loadConfig } from "../../config/load.ts";
import { describePlan, MigrateError, planImport, readHeadscale } from "../../migrate/headscale.ts";
import { importPlan } from "../../migrate/import.ts";
import type { CommandSpec, GroupSpec } from "../command.ts";
import { CliError, UsageError } from "../errors.ts";

const fromHeadscale: CommandSpec = {
  name: "from-headscale",
  summary: "Import a headscale v0.28/v0.29 database (users, nodes, keys, policy); server stopped",
  options: {
    from: {
      kind: "string",
      description: "headscale's database: a SQLite file or a postgres:// URL (never written)",
      required: true,
    },
    "dry-run": { kind: "boolean", description: "print what would be imported, write nothing" },
  },
  async run(ctx) {
    const source = ctx.options.string("from") ?? "";
    if (source === "") throw new UsageError("--from must name the headscale database", []);
    let config;
    try {
      config = loadConfig({ path: ctx.configPath, env: ctx.io.env }).config;
    } catch (e) {
      if (!(e instanceof ConfigError)) throw e;
      throw new CliError(`loading configuration: ${e.message.split("\n").join("; ")}`);
    }
    try {
      const plan = planImport(await readHeadscale(source));
      const report = describePlan(plan);
      const data = {
        version: plan.version,
        users: plan.users.length,
        nodes: plan.nodes.length,
        preAuthKeys: plan.preAuthKeys.length,
        apiKeys: plan.apiKeys.length,
        policy: plan.policy !== null,
        skipped: plan.skipped,
      };
      if (ctx.options.boolean("dry-run")) {
        return { data: { dryRun: true, ...data }, human: `${report}\n(dry run: nothing written)` };
      }
      if (ctx.output === "") ctx.io.printError(report);
      await importPlan(config.database, plan, { replace: ctx.options.boolean("force"), source });
      const where = config.database.type === "sqlite"
        ? config.database.sqlite.path
        : `PostgreSQL database ${config.database.postgres.name}`;
      return {
        data: { dryRun: false, ...data },
        human: `imported into ${where}; start headscale-deno with the same config and key files`,
      };
    } catch (e) {
      if (e instanceof MigrateError) throw new CliError(`cannot import: ${e.message}`);
      throw e;
    }
  },
};

export const migrateGroup: GroupSpec = {
  name: "migrate",
  summary: "Move an existing tailnet over from headscale",
  commands: [fromHeadscale],
};
