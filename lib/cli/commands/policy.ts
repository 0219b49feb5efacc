/** `policy`: read, replace or check the tailnet policy (HuJSON). */
import {
  CheckPolicyResponseSchema,
  GetPolicyResponseSchema,
  SetPolicyResponseSchema,
} from "../../../gen/headscale/v1/policy_pb.ts";
import type { CommandContext, CommandSpec, GroupSpec } from "../command.ts";
import { CliError } from "../errors.ts";
import { messageJson } from "../output.ts";

const FILE = {
  kind: "string",
  short: "f",
  description: "policy file (HuJSON)",
  required: true,
} as const;

async function readPolicyFile(ctx: CommandContext): Promise<string> {
  const path = ctx.options.string("file") ?? "";
  try {
    return await Deno.readTextFile(path);
  } catch (e) {
    const why = e instanceof Deno.errors.NotFound ? "no such file" : (e as Error).message;
    throw new CliError(`reading policy file ${path}: ${why}`);
  }
}

const get: CommandSpec = {
  name: "get",
  aliases: ["show", "view", "fetch"],
  summary: "Print the policy in force",
  async run(ctx) {
    const response = await ctx.call("loading policy", (c) => c.getPolicy({}));
    return { data: messageJson(GetPolicyResponseSchema, response), human: response.policy };
  },
};

const set: CommandSpec = {
  name: "set",
  aliases: ["put", "update"],
  summary: "Replace the policy (policy.mode: database)",
  options: { file: FILE },
  async run(ctx) {
    const policy = await readPolicyFile(ctx);
    const response = await ctx.call("setting policy", (c) => c.setPolicy({ policy }));
    return { data: messageJson(SetPolicyResponseSchema, response), human: "Policy updated." };
  },
};

const check: CommandSpec = {
  name: "check",
  summary: "Check a policy file against the live tailnet (including its tests)",
  options: { file: FILE },
  async run(ctx) {
    const policy = await readPolicyFile(ctx);
    const response = await ctx.call("checking policy", (c) => c.checkPolicy({ policy }));
    return { data: messageJson(CheckPolicyResponseSchema, response), human: "Policy is valid" };
  },
};

export const policyGroup: GroupSpec = {
  name: "policy",
  summary: "Manage the tailnet policy",
  commands: [get, set, check],
};
