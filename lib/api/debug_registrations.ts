/**
 * `debug create-node` (headscale's DebugCreateNode): parks a made-up machine under a
 * registration id the admin chose, so that a later `auth register --auth-id <id> --user <u>`
 * (or `nodes register --key <id>`) turns it into a real node, as if a client had been waiting.
 * The machines wait in the auth-request registry as its "debug-node" kind (expiring like
 * interactive logins, 15 minutes, within the registry's bound); this module is that kind's
 * handler.
 */
import { randomBytes } from "node:crypto";
import { create } from "@bufbuild/protobuf";
import { type Timestamp, timestampFromDate } from "@bufbuild/protobuf/wkt";
import { type Node, NodeSchema, RegisterMethod } from "../../gen/headscale/v1/node_pb.ts";
import { registrationIdProblem } from "../auth_requests/ids.ts";
import type { KindHandler } from "../auth_requests/registry.ts";
import { InvalidArgumentError } from "../state/errors.ts";
import { type State, validateRoutes } from "../state/state.ts";
import type { UserRecord } from "../store/types.ts";
import { userToProto } from "./convert.ts";
import type { MachineKey, NodeKey } from "../tailcfg/keys.ts";

/** A made-up machine waiting to be registered. */
export interface DebugRegistration {
  machineKey: MachineKey;
  nodeKey: NodeKey;
  hostname: string;
  /** What the node will announce: Hostname, OS "TestOS" and the routes (RoutableIPs). */
  hostinfo: { Hostname: string; OS: string; RoutableIPs: string[] };
}

export interface DebugCreateNodeInput {
  key: string;
  name: string;
  routes: string[];
}

/** A node's hostname as given: 1-255 characters, no whitespace or control characters. */
function checkName(name: string): void {
  if (name === "") throw new InvalidArgumentError("name is required");
  // deno-lint-ignore no-control-regex
  if (name.length > 255 || /[\s\x00-\x1f\x7f]/.test(name)) {
    throw new InvalidArgumentError(
      `invalid name "${name}": use 1-255 characters without spaces or control characters`,
    );
  }
}

/** Validates a DebugCreateNode request and makes up the machine it describes. */
export function newDebugRegistration(input: DebugCreateNodeInput): DebugRegistration {
  if (input.key === "") throw new InvalidArgumentError("key (the registration id) is required");
  const problem = registrationIdProblem(input.key);
  if (problem) throw new InvalidArgumentError(problem);
  checkName(input.name);
  const routes = input.routes.flatMap((r) => r.split(",")).map((r) => r.trim()).filter(Boolean);
  return {
    machineKey: `mkey:${randomBytes(32).toString("hex")}`,
    nodeKey: `nodekey:${randomBytes(32).toString("hex")}`,
    hostname: input.name,
    hostinfo: { Hostname: input.name, OS: "TestOS", RoutableIPs: validateRoutes(routes) },
  };
}

/** Go's zero time.Time as a timestamp (0001-01-01T00:00:00Z), which headscale echoes. */
const ZERO_TIME: Timestamp = timestampFromDate(new Date(-62135596800000));

/**
 * The node headscale answers DebugCreateNode with: not registered yet, so no id, no addresses
 * and zero times; it exists once the registration is completed.
 */
export function debugNodeToProto(reg: DebugRegistration, user: UserRecord): Node {
  return create(NodeSchema, {
    id: 0n,
    machineKey: reg.machineKey,
    nodeKey: reg.nodeKey,
    name: reg.hostname,
    user: userToProto(user),
    lastSeen: ZERO_TIME,
    expiry: ZERO_TIME,
    createdAt: ZERO_TIME,
    registerMethod: RegisterMethod.UNSPECIFIED,
    availableRoutes: reg.hostinfo.RoutableIPs,
  });
}

/**
 * The "debug-node" kind: `auth register` (or `nodes register`) makes the parked machine a node
 * of the user and uses the id up; a made-up machine has no node to re-authenticate, so
 * `auth approve` is refused; `auth reject` drops it.
 */
export function debugNodeHandler(
  state: Pick<State, "registerNode">,
): KindHandler<DebugRegistration> {
  return {
    noun: "debug node",
    // Nobody waits for the verdict: a decided machine is gone at once.
    keepsDecision: false,
    register: ({ data: reg }, userId) =>
      state.registerNode({
        machineKey: reg.machineKey,
        nodeKey: reg.nodeKey,
        hostname: reg.hostname,
        hostinfo: reg.hostinfo,
        userId,
        tags: [],
        authKeyId: null,
        method: "cli",
        ephemeral: false,
        expiry: null,
      }),
    approve: () =>
      Promise.reject(
        new InvalidArgumentError(
          "this machine has no node yet; register it for a user (auth register --user)",
        ),
      ),
    describe: (reg) => ({
      hostname: reg.hostname,
      machineKey: reg.machineKey,
      nodeKey: reg.nodeKey,
    }),
  };
}
