/** `preauthkeys`: keys that let a node join without an interactive login. */
import {
  DeletePreAuthKeyResponseSchema,
  ExpirePreAuthKeyResponseSchema,
  PreAuthKeySchema,
} from "../../../gen/headscale/v1/preauthkey_pb.ts";
import type { CommandSpec, GroupSpec } from "../command.ts";
import { formatExpiry, formatTimestamp, messageJson, renderTable } from "../output.ts";
import { expirationFromFlag, userByRef } from "./common.ts";

const create: CommandSpec = {
  name: "create",
  aliases: ["c", "new"],
  summary: "Create a pre-auth key (printed once, in full)",
  options: {
    user: { kind: "string", short: "u", description: "owner: user id or name (omit for tags)" },
    reusable: { kind: "boolean", description: "the key can register several nodes" },
    ephemeral: { kind: "boolean", description: "nodes registered with it are ephemeral" },
    expiration: {
      kind: "string",
      short: "e",
      description: "lifetime, e.g. 30m, 24h, 90d",
      default: "1h",
    },
    tags: { kind: "list", description: "tags for the nodes, e.g. tag:web,tag:db" },
  },
  async run(ctx) {
    const expiration = expirationFromFlag(ctx, ["preauthkeys", "create"]);
    const ref = ctx.options.string("user");
    const user = ref === undefined || ref === "" ? undefined : await userByRef(ctx, ref);
    const { preAuthKey } = await ctx.call("creating pre-auth key", (c) =>
      c.createPreAuthKey({
        user: user?.id ?? 0n,
        reusable: ctx.options.boolean("reusable"),
        ephemeral: ctx.options.boolean("ephemeral"),
        expiration,
        aclTags: ctx.options.list("tags") ?? [],
      }));
    return {
      data: preAuthKey ? messageJson(PreAuthKeySchema, preAuthKey) : null,
      human: preAuthKey?.key ?? "",
    };
  },
};

const list: CommandSpec = {
  name: "list",
  aliases: ["ls", "show"],
  summary: "List pre-auth keys (secrets masked)",
  async run(ctx) {
    const { preAuthKeys } = await ctx.call("listing pre-auth keys", (c) => c.listPreAuthKeys({}));
    const now = ctx.io.now();
    const rows = preAuthKeys.map((k) => [
      String(k.id),
      k.key,
      String(k.reusable),
      String(k.ephemeral),
      String(k.used),
      formatExpiry(k.expiration, now, ctx.style),
      formatTimestamp(k.createdAt),
      k.aclTags.length ? k.aclTags.join("\n") : k.user?.name ?? "-",
    ]);
    const header = [
      "ID",
      "Key/Prefix",
      "Reusable",
      "Ephemeral",
      "Used",
      "Expiration",
      "Created",
      "Owner",
    ];
    return {
      data: preAuthKeys.map((k) => messageJson(PreAuthKeySchema, k)),
      human: renderTable([header, ...rows], ctx.style),
    };
  },
};

const expire: CommandSpec = {
  name: "expire",
  aliases: ["revoke", "exp", "e"],
  summary: "Expire a pre-auth key",
  options: { id: { kind: "id", short: "i", description: "pre-auth key id", required: true } },
  async run(ctx) {
    const response = await ctx.call(
      "expiring pre-auth key",
      (c) => c.expirePreAuthKey({ id: ctx.options.id("id") }),
    );
    return { data: messageJson(ExpirePreAuthKeyResponseSchema, response), human: "Key expired" };
  },
};

const remove: CommandSpec = {
  name: "delete",
  aliases: ["del", "rm", "d"],
  summary: "Delete a pre-auth key",
  options: { id: { kind: "id", short: "i", description: "pre-auth key id", required: true } },
  async run(ctx) {
    const response = await ctx.call(
      "deleting pre-auth key",
      (c) => c.deletePreAuthKey({ id: ctx.options.id("id") }),
    );
    return { data: messageJson(DeletePreAuthKeyResponseSchema, response), human: "Key deleted" };
  },
};

export const preAuthKeysGroup: GroupSpec = {
  name: "preauthkeys",
  aliases: ["preauthkey", "authkey", "pre"],
  summary: "Manage pre-auth keys",
  commands: [create, list, expire, remove],
};
