/** `users`: create, list, rename and destroy the owners of nodes. */
import { UserSchema } from "../../../gen/headscale/v1/user_pb.ts";
import { DeleteUserResponseSchema } from "../../../gen/headscale/v1/user_pb.ts";
import type { CommandSpec, GroupSpec, OptionSpec } from "../command.ts";
import { UsageError } from "../errors.ts";
import { formatTimestamp, messageJson, renderTable } from "../output.ts";
import { userFromFlags } from "./common.ts";

const USER_SELECTOR: Record<string, OptionSpec> = {
  identifier: { kind: "id", short: "i", description: "user id" },
  name: { kind: "string", short: "n", description: "user name" },
};

const create: CommandSpec = {
  name: "create",
  aliases: ["c", "new"],
  summary: "Create a new user",
  argsUsage: "NAME",
  args: { min: 1, max: 1 },
  options: {
    "display-name": { kind: "string", short: "d", description: "display name" },
    email: { kind: "string", short: "e", description: "email address" },
    "picture-url": { kind: "string", short: "p", description: "profile picture URL" },
  },
  async run(ctx) {
    const pictureUrl = ctx.options.string("picture-url") ?? "";
    if (pictureUrl !== "" && !URL.canParse(pictureUrl)) {
      throw new UsageError(`--picture-url "${pictureUrl}" is not a URL`, ["users", "create"]);
    }
    const { user } = await ctx.call("creating user", (c) =>
      c.createUser({
        name: ctx.positionals[0],
        displayName: ctx.options.string("display-name") ?? "",
        email: ctx.options.string("email") ?? "",
        pictureUrl,
      }));
    return { data: user ? messageJson(UserSchema, user) : null, human: "User created" };
  },
};

const list: CommandSpec = {
  name: "list",
  aliases: ["ls", "show"],
  summary: "List users",
  options: { ...USER_SELECTOR, email: { kind: "string", short: "e", description: "email" } },
  async run(ctx) {
    const { users } = await ctx.call("listing users", (c) =>
      c.listUsers({
        id: ctx.options.id("identifier") ?? 0n,
        name: ctx.options.string("name") ?? "",
        email: ctx.options.string("email") ?? "",
      }));
    const rows = users.map((u) => [
      String(u.id),
      u.displayName,
      u.name,
      u.email,
      formatTimestamp(u.createdAt),
    ]);
    return {
      data: users.map((u) => messageJson(UserSchema, u)),
      human: renderTable([["ID", "Name", "Username", "Email", "Created"], ...rows], ctx.style),
    };
  },
};

const rename: CommandSpec = {
  name: "rename",
  aliases: ["mv"],
  summary: "Rename a user",
  options: {
    ...USER_SELECTOR,
    "new-name": { kind: "string", short: "r", description: "new user name", required: true },
  },
  async run(ctx) {
    const old = await userFromFlags(ctx, ["users", "rename"]);
    const { user } = await ctx.call(
      "renaming user",
      (c) => c.renameUser({ oldId: old.id, newName: ctx.options.string("new-name") }),
    );
    return { data: user ? messageJson(UserSchema, user) : null, human: "User renamed" };
  },
};

const destroy: CommandSpec = {
  name: "destroy",
  aliases: ["delete"],
  summary: "Delete a user and its pre-auth keys",
  options: USER_SELECTOR,
  async run(ctx) {
    const user = await userFromFlags(ctx, ["users", "destroy"]);
    const question =
      `Do you want to remove the user "${user.name}" (${user.id}) and any associated preauthkeys?`;
    if (!(await ctx.confirm(question))) {
      return { data: { Result: "User not destroyed" }, human: "User not destroyed" };
    }
    const response = await ctx.call("destroying user", (c) => c.deleteUser({ id: user.id }));
    return { data: messageJson(DeleteUserResponseSchema, response), human: "User destroyed" };
  },
};

export const usersGroup: GroupSpec = {
  name: "users",
  aliases: ["user"],
  summary: "Manage the users of headscale",
  commands: [create, list, rename, destroy],
};
