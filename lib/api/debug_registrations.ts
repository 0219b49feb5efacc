/**
 * `debug create-node` (headscale's DebugCreateNode): parks a made-up machine under a
 * registration id the admin chose, so that a later `auth register --auth-id <id> --user <u>`
 * (or `nodes register --key <id>`) turns it into a real node, as if a client had been waiting.
 * Entries expire like interactive logins (15 minutes) and the cache is bounded.
 */
import { randomBytes } from "node:crypto";
import { create } from "@bufbuild/protobuf";
import { type Timestamp, timestampFromDate } from "@bufbuild/protobuf/wkt";
import { type Node, NodeSchema, RegisterMethod } from "../../gen/headscale/v1/node_pb.ts";
import { ExpiringMap } from "../auth_requests/expiring_map.ts";
import { registrationIdProblem } from "../auth_requests/ids.ts";
import { InvalidArgumentError } from "../state/errors.ts";
import { validateRoutes } from "../state/state.ts";
import type { NodeRecord, UserRecord } from "../store/types.ts";
import { userToProto } from "./convert.ts";
import type { PendingAuthApi } from "./service.ts";

/** A made-up machine waiting to be registered. */
export interface DebugRegistration {
  machineKey: string;
  nodeKey: string;
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

export interface DebugRegistrationsOptions {
  /** How long an entry waits (headscale's registration cache: 15 minutes). */
  ttlMs?: number;
  maxEntries?: number;
  now?: () => Date;
}

export interface ParkedRegistration {
  reg: DebugRegistration;
  /** Epoch milliseconds. */
  createdAt: number;
}

export class DebugRegistrations {
  private readonly entries: ExpiringMap<ParkedRegistration>;
  private readonly now: () => number;

  constructor(opts: DebugRegistrationsOptions = {}) {
    const now = opts.now ?? (() => new Date());
    this.now = () => now().getTime();
    this.entries = new ExpiringMap({
      ttlMs: opts.ttlMs ?? 15 * 60_000,
      maxEntries: opts.maxEntries ?? 1_000,
      now: this.now,
    });
  }

  /** Parks `reg` under `id`, replacing what was there (as headscale's cache does). */
  add(id: string, reg: DebugRegistration): void {
    this.entries.set(id, { reg, createdAt: this.now() });
  }

  has(id: string): boolean {
    return this.entries.has(id);
  }

  /** Removes and returns the entry, so two concurrent registrations cannot both use it. */
  take(id: string): ParkedRegistration | undefined {
    const e = this.entries.get(id);
    this.entries.delete(id);
    return e;
  }

  /** Puts back an entry whose registration failed, keeping its age. */
  restore(id: string, parked: ParkedRegistration): void {
    if (!this.entries.has(id)) this.entries.set(id, parked);
  }

  get size(): number {
    return this.entries.size;
  }
}

/**
 * The pending-registration API the service uses: debug entries first, the server's interactive
 * logins otherwise. `register` turns a debug entry into a node of the given user.
 */
export function withDebugRegistrations(
  logins: PendingAuthApi,
  debug: DebugRegistrations,
  register: (reg: DebugRegistration, userId: number) => Promise<NodeRecord>,
): PendingAuthApi {
  return {
    async register(authId, userId) {
      const parked = debug.take(authId);
      if (!parked) return await logins.register(authId, userId);
      try {
        return await register(parked.reg, userId);
      } catch (e) {
        debug.restore(authId, parked);
        throw e;
      }
    },
    approve(authId) {
      if (!debug.has(authId)) return logins.approve(authId);
      return Promise.reject(
        new InvalidArgumentError(
          "this machine has no node yet; register it for a user (auth register --user)",
        ),
      );
    },
    reject(authId) {
      if (debug.take(authId)) return Promise.resolve();
      return logins.reject(authId);
    },
  };
}
