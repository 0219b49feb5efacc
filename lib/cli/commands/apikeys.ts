/** `apikeys`: bearer keys for the remote management API. */
import {
  ApiKeySchema,
  DeleteApiKeyResponseSchema,
  ExpireApiKeyResponseSchema,
} from "../../../gen/headscale/v1/apikey_pb.ts";
import type { CommandContext, CommandSpec, GroupSpec, OptionSpec } from "../command.ts";
import { UsageError } from "../errors.ts";
import { formatExpiry, formatTimestamp, messageJson, renderTable } from "../output.ts";
import { expirationFromFlag } from "./common.ts";

const KEY_SELECTOR: Record<string, OptionSpec> = {
  id: { kind: "id", short: "i", description: "API key id" },
  prefix: { kind: "string", short: "p", description: "API key prefix (as listed)" },
};

/** Exactly one of --id and --prefix. */
function selector(ctx: CommandContext, verb: string): { id: bigint; prefix: string } {
  const id = ctx.options.id("id");
  const prefix = ctx.options.string("prefix") ?? "";
  if (id === undefined && prefix === "") {
    throw new UsageError("either --id or --prefix is required", ["apikeys", verb]);
  }
  if (id !== undefined && prefix !== "") {
    throw new UsageError("give only one of --id and --prefix", ["apikeys", verb]);
  }
  return { id: id ?? 0n, prefix };
}

const create: CommandSpec = {
  name: "create",
  aliases: ["c", "new"],
  summary: "Create an API key (shown only now; it cannot be retrieved later)",
  options: {
    expiration: {
      kind: "string",
      short: "e",
      description: "lifetime, e.g. 30m, 24h, 90d",
      default: "90d",
    },
  },
  async run(ctx) {
    const expiration = expirationFromFlag(ctx, ["apikeys", "create"]);
    const { apiKey } = await ctx.call("creating API key", (c) => c.createApiKey({ expiration }));
    return { data: apiKey, human: apiKey };
  },
};

const list: CommandSpec = {
  name: "list",
  aliases: ["ls", "show"],
  summary: "List API keys",
  async run(ctx) {
    const { apiKeys } = await ctx.call("listing API keys", (c) => c.listApiKeys({}));
    const now = ctx.io.now();
    const rows = apiKeys.map((k) => [
      String(k.id),
      k.prefix,
      formatExpiry(k.expiration, now, ctx.style),
      formatTimestamp(k.createdAt),
    ]);
    return {
      data: apiKeys.map((k) => messageJson(ApiKeySchema, k)),
      human: renderTable([["ID", "Prefix", "Expiration", "Created"], ...rows], ctx.style),
    };
  },
};

const expire: CommandSpec = {
  name: "expire",
  aliases: ["revoke", "exp", "e"],
  summary: "Expire an API key",
  options: KEY_SELECTOR,
  async run(ctx) {
    const which = selector(ctx, "expire");
    const response = await ctx.call("expiring API key", (c) => c.expireApiKey(which));
    return { data: messageJson(ExpireApiKeyResponseSchema, response), human: "Key expired" };
  },
};

const remove: CommandSpec = {
  name: "delete",
  aliases: ["remove", "del"],
  summary: "Delete an API key",
  options: KEY_SELECTOR,
  async run(ctx) {
    const which = selector(ctx, "delete");
    const response = await ctx.call("deleting API key", (c) => c.deleteApiKey(which));
    return { data: messageJson(DeleteApiKeyResponseSchema, response), human: "Key deleted" };
  },
};

export const apiKeysGroup: GroupSpec = {
  name: "apikeys",
  aliases: ["apikey", "api"],
  summary: "Manage API keys for remote access",
  commands: [create, list, expire, remove],
};
