/** `debug`: commands for testing a server, as headscale's `debug` group. */
import { NodeSchema } from "../../../gen/headscale/v1/node_pb.ts";
import { registrationIdProblem } from "../../auth_requests/ids.ts";
import type { CommandSpec, GroupSpec } from "../command.ts";
import { CliError } from "../errors.ts";
import { messageJson } from "../output.ts";

const createNode: CommandSpec = {
  name: "create-node",
  summary: "Create a node that can be registered with `auth register <>` command",
  options: {
    name: { kind: "string", description: "Name", required: true },
    user: { kind: "string", short: "u", description: "User", required: true },
    key: {
      kind: "string",
      short: "k",
      description: "Key: the registration id, hskey-authreq- and 24 characters",
      required: true,
    },
    route: {
      kind: "list",
      short: "r",
      description: "List (or repeated flags) of routes to advertise",
    },
  },
  async run(ctx) {
    const key = ctx.options.string("key") ?? "";
    const problem = registrationIdProblem(key);
    if (problem) throw new CliError(`parsing machine key: ${problem}`);
    const { node } = await ctx.call("creating node", (c) =>
      c.debugCreateNode({
        key,
        name: ctx.options.string("name"),
        user: ctx.options.string("user"),
        routes: ctx.options.list("route") ?? [],
      }));
    return { data: node ? messageJson(NodeSchema, node) : null, human: "Node created" };
  },
};

export const debugGroup: GroupSpec = {
  name: "debug",
  summary: "debug and testing commands",
  commands: [createNode],
};
