/** `auth`: decide on interactive logins waiting at /register/<auth id>. */
import {
  AuthApproveResponseSchema,
  AuthRejectResponseSchema,
} from "../../../gen/headscale/v1/auth_pb.ts";
import { NodeSchema } from "../../../gen/headscale/v1/node_pb.ts";
import type { CommandSpec, GroupSpec } from "../command.ts";
import { messageJson } from "../output.ts";

const AUTH_ID = {
  kind: "string",
  description: "the id shown on the login page / in the client's URL",
  required: true,
} as const;

const register: CommandSpec = {
  name: "register",
  summary: "Register a waiting node as a node of USER",
  options: {
    "auth-id": AUTH_ID,
    user: { kind: "string", short: "u", description: "owner: user name or id", required: true },
  },
  async run(ctx) {
    const { node } = await ctx.call("registering node", (c) =>
      c.authRegister({
        authId: ctx.options.string("auth-id"),
        user: ctx.options.string("user"),
      }));
    return {
      data: node ? messageJson(NodeSchema, node) : null,
      human: `Node ${node?.givenName ?? ""} registered`,
    };
  },
};

const approve: CommandSpec = {
  name: "approve",
  summary: "Approve a pending authentication request",
  options: { "auth-id": AUTH_ID },
  async run(ctx) {
    const response = await ctx.call(
      "approving auth request",
      (c) => c.authApprove({ authId: ctx.options.string("auth-id") }),
    );
    return {
      data: messageJson(AuthApproveResponseSchema, response),
      human: "Auth request approved",
    };
  },
};

const reject: CommandSpec = {
  name: "reject",
  summary: "Reject a pending authentication request",
  options: { "auth-id": AUTH_ID },
  async run(ctx) {
    const response = await ctx.call(
      "rejecting auth request",
      (c) => c.authReject({ authId: ctx.options.string("auth-id") }),
    );
    return {
      data: messageJson(AuthRejectResponseSchema, response),
      human: "Auth request rejected",
    };
  },
};

export const authGroup: GroupSpec = {
  name: "auth",
  summary: "Manage node authentication and approval",
  commands: [register, approve, reject],
};
