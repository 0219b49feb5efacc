/** Helpers shared by command groups: finding a user, turning a duration flag into a time. */
import { type Timestamp, timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { User } from "../../../gen/headscale/v1/user_pb.ts";
import type { CommandContext } from "../command.ts";
import { parseKeyDuration } from "../duration.ts";
import { CliError, UsageError } from "../errors.ts";

/** The user named by -i/--identifier or -n/--name (exactly one must be given). */
export async function userFromFlags(ctx: CommandContext, path: string[]): Promise<User> {
  const id = ctx.options.id("identifier");
  const name = ctx.options.string("name");
  if (id === undefined && (name === undefined || name === "")) {
    throw new UsageError("--identifier or --name is required", path);
  }
  if (id !== undefined && name !== undefined) {
    throw new UsageError("give only one of --identifier and --name", path);
  }
  const users = await ctx.call(
    "listing users",
    (c) => c.listUsers(id !== undefined ? { id } : { name }),
  );
  const wanted = id !== undefined ? `with id ${id}` : `"${name}"`;
  if (users.users.length === 0) throw new CliError(`no user ${wanted}`);
  if (users.users.length > 1) throw new CliError(`several users match ${wanted}; use --identifier`);
  return users.users[0];
}

/** A user given as an id ("3") or a name ("alice"), resolved through ListUsers. */
export async function userByRef(ctx: CommandContext, ref: string): Promise<User> {
  const byId = /^\d+$/.test(ref);
  const users = await ctx.call(
    "listing users",
    (c) => c.listUsers(byId ? { id: BigInt(ref) } : { name: ref }),
  );
  const match = users.users.filter((u) => byId ? u.id === BigInt(ref) : u.name === ref);
  if (match.length === 0) throw new CliError(`no user ${byId ? `with id ${ref}` : `"${ref}"`}`);
  if (match.length > 1) throw new CliError(`several users are called "${ref}"; use the id`);
  return match[0];
}

/** now + the --expiration duration ("1h", "90d"); a malformed duration is a usage error. */
export function expirationFromFlag(ctx: CommandContext, path: string[]): Timestamp {
  const text = ctx.options.string("expiration") ?? "";
  let ms: number;
  try {
    ms = parseKeyDuration(text);
  } catch (e) {
    throw new UsageError(`--expiration: ${(e as Error).message}`, path);
  }
  return timestampFromDate(new Date(ctx.io.now().getTime() + ms));
}
