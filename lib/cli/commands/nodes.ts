/** `nodes`: list, inspect and change registered machines. */
import { timestampDate, timestampFromDate } from "@bufbuild/protobuf/wkt";
import {
  BackfillNodeIPsResponseSchema,
  type Node,
  NodeSchema,
} from "../../../gen/headscale/v1/node_pb.ts";
import type { CommandContext, CommandResult, CommandSpec, GroupSpec } from "../command.ts";
import type { Style } from "../output.ts";
import { UsageError } from "../errors.ts";
import { formatTimestamp, messageJson, renderTable, shortKey } from "../output.ts";
import { userByRef } from "./common.ts";

const NODE_ID = { kind: "id", short: "i", description: "node id", required: true } as const;

function nodeResult(node: Node | undefined, human: string): CommandResult {
  return { data: node ? messageJson(NodeSchema, node) : null, human };
}

/** The columns of headscale's `nodes list`. */
export function nodesTable(nodes: Node[], now: Date, style: Style): string {
  const header = [
    "ID",
    "Hostname",
    "Name",
    "MachineKey",
    "NodeKey",
    "User",
    "Tags",
    "IP addresses",
    "Ephemeral",
    "Last seen",
    "Expiration",
    "Connected",
    "Expired",
  ];
  const rows = nodes.map((n) => {
    const expired = n.expiry !== undefined && timestampDate(n.expiry).getTime() < now.getTime();
    return [
      String(n.id),
      n.name,
      n.givenName,
      shortKey(n.machineKey),
      shortKey(n.nodeKey),
      n.user?.name ?? "",
      n.tags.join("\n"),
      n.ipAddresses.join("\n"),
      String(n.preAuthKey?.ephemeral ?? false),
      formatTimestamp(n.lastSeen),
      n.expiry ? formatTimestamp(n.expiry) : "N/A",
      n.online ? style.good("online") : style.bad("offline"),
      expired ? style.bad("yes") : style.good("no"),
    ];
  });
  return renderTable([header, ...rows], style);
}

/** The columns of headscale's `nodes list-routes`. */
export function routesTable(nodes: Node[], style: Style): string {
  const rows = nodes.map((n) => [
    String(n.id),
    n.givenName,
    n.approvedRoutes.join("\n"),
    n.availableRoutes.join("\n"),
    n.subnetRoutes.join("\n"),
  ]);
  return renderTable(
    [["ID", "Hostname", "Approved", "Available", "Serving (Primary)"], ...rows],
    style,
  );
}

const list: CommandSpec = {
  name: "list",
  aliases: ["ls", "show"],
  summary: "List nodes",
  options: { user: { kind: "string", short: "u", description: "only this user's nodes" } },
  async run(ctx) {
    const { nodes } = await ctx.call(
      "listing nodes",
      (c) => c.listNodes({ user: ctx.options.string("user") ?? "" }),
    );
    return {
      data: nodes.map((n) => messageJson(NodeSchema, n)),
      human: nodesTable(nodes, ctx.io.now(), ctx.style),
    };
  },
};

const listRoutes: CommandSpec = {
  name: "list-routes",
  aliases: ["lsr", "routes"],
  summary: "List the routes nodes advertise, have approved and serve",
  options: { identifier: { ...NODE_ID, required: false } },
  async run(ctx) {
    const { nodes } = await ctx.call("listing nodes", (c) => c.listNodes({}));
    const id = ctx.options.id("identifier");
    const shown = nodes.filter((n) =>
      (id === undefined || n.id === id) &&
      (n.approvedRoutes.length > 0 || n.availableRoutes.length > 0 || n.subnetRoutes.length > 0)
    );
    return {
      data: shown.map((n) => messageJson(NodeSchema, n)),
      human: routesTable(shown, ctx.style),
    };
  },
};

const register: CommandSpec = {
  name: "register",
  summary: "Register a waiting node (deprecated: use auth register)",
  options: {
    user: { kind: "string", short: "u", description: "owner: user name or id", required: true },
    key: { kind: "string", short: "k", description: "registration id", required: true },
  },
  async run(ctx) {
    if (ctx.output === "") {
      ctx.io.printError(
        'Note: "nodes register" is deprecated; use "auth register --auth-id ID --user USER"',
      );
    }
    const { node } = await ctx.call("registering node", (c) =>
      c.registerNode({
        user: ctx.options.string("user"),
        key: ctx.options.string("key"),
      }));
    return nodeResult(node, `Node ${node?.givenName ?? ""} registered`);
  },
};

const RFC3339 = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$/i;

const expire: CommandSpec = {
  name: "expire",
  aliases: ["logout", "exp", "e"],
  summary: "Expire (log out) a node, set its expiry, or disable expiry with --disable",
  options: {
    identifier: NODE_ID,
    expiry: {
      kind: "string",
      short: "e",
      description: "expire at this RFC 3339 time (e.g. 2025-08-27T10:00:00Z) instead of now",
    },
    disable: { kind: "boolean", short: "d", description: "never expire this node" },
  },
  async run(ctx) {
    const nodeId = ctx.options.id("identifier");
    if (ctx.options.boolean("disable")) {
      if (ctx.options.string("expiry") !== undefined) {
        throw new UsageError("give only one of --expiry and --disable", ["nodes", "expire"]);
      }
      const { node } = await ctx.call(
        "disabling node expiry",
        (c) => c.expireNode({ nodeId, disableExpiry: true }),
      );
      return nodeResult(node, "Node expiry disabled");
    }
    const text = ctx.options.string("expiry");
    if (text === undefined || text === "") {
      const { node } = await ctx.call("expiring node", (c) => c.expireNode({ nodeId }));
      return nodeResult(node, "Node expired");
    }
    const at = new Date(text);
    if (!RFC3339.test(text) || Number.isNaN(at.getTime())) {
      throw new UsageError(
        `--expiry "${text}" is not an RFC 3339 time like 2025-08-27T10:00:00Z`,
        ["nodes", "expire"],
      );
    }
    const { node } = await ctx.call(
      "expiring node",
      (c) => c.expireNode({ nodeId, expiry: timestampFromDate(at) }),
    );
    const future = at.getTime() > ctx.io.now().getTime();
    return nodeResult(node, future ? "Node expiration updated" : "Node expired");
  },
};

const rename: CommandSpec = {
  name: "rename",
  summary: "Rename a node (its name in the tailnet)",
  argsUsage: "NEW_NAME",
  args: { min: 1, max: 1 },
  options: { identifier: NODE_ID },
  async run(ctx) {
    const { node } = await ctx.call("renaming node", (c) =>
      c.renameNode({
        nodeId: ctx.options.id("identifier"),
        newName: ctx.positionals[0],
      }));
    return nodeResult(node, "Node renamed");
  },
};

const move: CommandSpec = {
  name: "move",
  aliases: ["mv"],
  summary: "Give a node to another user",
  options: {
    identifier: NODE_ID,
    user: { kind: "string", short: "u", description: "user id or name", required: true },
  },
  async run(ctx) {
    const user = await userByRef(ctx, ctx.options.string("user") ?? "");
    const { node } = await ctx.call(
      "moving node",
      (c) => c.moveNode({ nodeId: ctx.options.id("identifier"), user: user.id }),
    );
    return nodeResult(node, "Node moved to another user");
  },
};

const remove: CommandSpec = {
  name: "delete",
  aliases: ["del"],
  summary: "Delete a node",
  options: { identifier: NODE_ID },
  async run(ctx) {
    const nodeId = ctx.options.id("identifier");
    const { node } = await ctx.call("getting node", (c) => c.getNode({ nodeId }));
    if (!(await ctx.confirm(`Do you want to remove the node ${node?.name ?? nodeId}?`))) {
      return { data: { Result: "Node not deleted" }, human: "Node not deleted" };
    }
    await ctx.call("deleting node", (c) => c.deleteNode({ nodeId }));
    return { data: { Result: "Node deleted" }, human: "Node deleted" };
  },
};

const tag: CommandSpec = {
  name: "tag",
  aliases: ["tags", "t"],
  summary: "Set the tags of a node (replaces them; none clears them)",
  options: {
    identifier: NODE_ID,
    tags: { kind: "list", short: "t", description: "tags, e.g. tag:web,tag:db" },
  },
  async run(ctx) {
    const { node } = await ctx.call("setting tags", (c) =>
      c.setTags({
        nodeId: ctx.options.id("identifier"),
        tags: ctx.options.list("tags") ?? [],
      }));
    return nodeResult(node, "Node updated");
  },
};

const approveRoutes: CommandSpec = {
  name: "approve-routes",
  summary: "Set the approved routes of a node (replaces them; empty clears them)",
  options: {
    identifier: NODE_ID,
    routes: {
      kind: "list",
      short: "r",
      description: 'routes, e.g. "10.0.0.0/8,192.168.0.0/24"; "" removes all',
    },
  },
  async run(ctx) {
    const { node } = await ctx.call("setting approved routes", (c) =>
      c.setApprovedRoutes({
        nodeId: ctx.options.id("identifier"),
        routes: ctx.options.list("routes") ?? [],
      }));
    return nodeResult(node, "Node updated");
  },
};

const backfillIps: CommandSpec = {
  name: "backfillips",
  summary: "Give nodes addresses from newly configured prefixes (and drop removed ones)",
  async run(ctx: CommandContext) {
    if (!(await ctx.confirm("Are you sure that you want to assign/remove IPs to/from nodes?"))) {
      return { data: { Result: "Nothing changed" }, human: "Nothing changed" };
    }
    const response = await ctx.call(
      "backfilling IPs",
      (c) => c.backfillNodeIPs({ confirmed: true }),
    );
    return {
      data: messageJson(BackfillNodeIPsResponseSchema, response),
      human: ["Node IPs backfilled successfully", ...response.changes].join("\n"),
    };
  },
};

export const nodesGroup: GroupSpec = {
  name: "nodes",
  aliases: ["node"],
  summary: "Manage the nodes of headscale",
  commands: [
    list,
    listRoutes,
    register,
    expire,
    rename,
    move,
    remove,
    tag,
    approveRoutes,
    backfillIps,
  ],
};
