/** State records → the management API's messages (headscale.v1). */
import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { type ApiKey, ApiKeySchema } from "../../gen/headscale/v1/apikey_pb.ts";
import { type Node, NodeSchema, RegisterMethod } from "../../gen/headscale/v1/node_pb.ts";
import { type PreAuthKey, PreAuthKeySchema } from "../../gen/headscale/v1/preauthkey_pb.ts";
import { type User, UserSchema } from "../../gen/headscale/v1/user_pb.ts";
import { maskedKey } from "../auth/secrets.ts";
import type { State } from "../state/state.ts";
import { advertisedRoutes, isExitRoute, servedRoutes } from "../state/routes.ts";
import type {
  ApiKeyRecord,
  NodeRecord,
  PreAuthKeyRecord,
  RegisterMethod as StoreRegisterMethod,
  UserRecord,
} from "../store/types.ts";

const ts = (d: Date | null) => (d ? timestampFromDate(d) : undefined);

export function userToProto(u: UserRecord): User {
  return create(UserSchema, {
    id: BigInt(u.id),
    name: u.name,
    createdAt: ts(u.createdAt),
    displayName: u.displayName,
    email: u.email,
    providerId: u.providerId,
    provider: u.provider,
    profilePicUrl: u.profilePicUrl,
  });
}

export function preAuthKeyToProto(k: PreAuthKeyRecord, state: State, fullKey?: string): PreAuthKey {
  const user = k.userId === null ? undefined : state.getUser(k.userId);
  return create(PreAuthKeySchema, {
    user: user ? userToProto(user) : undefined,
    id: BigInt(k.id),
    key: fullKey ?? maskedKey("auth", k.prefix),
    reusable: k.reusable,
    ephemeral: k.ephemeral,
    used: k.used,
    expiration: ts(k.expiration),
    createdAt: ts(k.createdAt),
    aclTags: k.tags,
  });
}

export function apiKeyToProto(k: ApiKeyRecord): ApiKey {
  return create(ApiKeySchema, {
    id: BigInt(k.id),
    prefix: maskedKey("api", k.prefix),
    expiration: ts(k.expiration),
    createdAt: ts(k.createdAt),
    lastSeen: ts(k.lastSeen),
  });
}

const METHODS: Record<StoreRegisterMethod, RegisterMethod> = {
  authkey: RegisterMethod.AUTH_KEY,
  cli: RegisterMethod.CLI,
  oidc: RegisterMethod.OIDC,
  unspecified: RegisterMethod.UNSPECIFIED,
};

/** A node as the API shows it: routes announced (available), approved and served (subnet). */
export function nodeToProto(n: NodeRecord, state: State): Node {
  const user = n.userId === null ? undefined : state.getUser(n.userId);
  const authKey = n.authKeyId === null
    ? undefined
    : state.listPreAuthKeys().find((k) => k.id === n.authKeyId);
  const available = advertisedRoutes(n);
  return create(NodeSchema, {
    id: BigInt(n.id),
    machineKey: n.machineKey,
    nodeKey: n.nodeKey,
    discoKey: n.discoKey,
    ipAddresses: [n.ipv4, n.ipv6].filter((x): x is string => x !== null),
    name: n.hostname,
    user: user ? userToProto(user) : undefined,
    lastSeen: ts(n.lastSeen),
    expiry: ts(n.expiry),
    preAuthKey: authKey ? preAuthKeyToProto(authKey, state) : undefined,
    createdAt: ts(n.createdAt),
    registerMethod: METHODS[n.registerMethod],
    givenName: n.givenName,
    online: state.isOnline(n.id),
    approvedRoutes: n.approvedRoutes,
    availableRoutes: available,
    // As headscale: what the node serves now, its primary subnet routes (an HA standby or an
    // offline router serves none) and its approved exit routes.
    subnetRoutes: [...state.primaryRoutesOf(n.id), ...servedRoutes(n).filter(isExitRoute)],
    tags: n.tags,
  });
}
