/**
 * Records to table rows and back, once for both backends. The columns and the checks are the
 * same; a backend only says how its driver takes a timestamp and a boolean, and how a boolean
 * comes back (see Dialect). Reading a malformed value throws an error naming the column and row.
 */
import {
  checkId,
  checkOptionalId,
  decodeObject,
  decodeOptionalTime,
  decodeStrings,
  decodeTime,
  encodeObject,
  encodeStrings,
} from "./codec.ts";
import type {
  AdminSessionRecord,
  ApiKeyRecord,
  AuditEventRecord,
  NewAdminSession,
  NewApiKey,
  NewAuditEvent,
  NewNode,
  NewPreAuthKey,
  NewUser,
  NodeRecord,
  PreAuthKeyRecord,
  RegisterMethod,
  UserRecord,
} from "./types.ts";

/**
 * How one database takes timestamps and booleans. `Value` is what those become: ISO text and
 * 0/1 for SQLite, Date and boolean for PostgreSQL.
 */
export interface Dialect<Value> {
  /** Checks a timestamp (an Invalid Date is refused, naming `field`) and encodes it. */
  time(value: Date, field: string): Value;
  bool(value: boolean): Value;
  /** Reads a boolean column as the driver returns it. */
  readBool(value: unknown): boolean;
}

/** Column name to value, as the backends bind them. */
export type Params<Value> = Record<string, string | number | null | Value>;
export type Row = Record<string, unknown>;
/** The tables that hold records, each with an integer primary key `id`. */
export type Table =
  | "users"
  | "nodes"
  | "pre_auth_keys"
  | "api_keys"
  | "admin_sessions"
  | "audit_events";

function optionalTime<Value>(
  d: Dialect<Value>,
  value: Date | null,
  field: string,
): Value | null {
  return value === null ? null : d.time(value, field);
}

// ---- encoding -------------------------------------------------------------------------------

export function userParams<Value>(u: NewUser, d: Dialect<Value>): Params<Value> {
  return {
    name: u.name,
    display_name: u.displayName,
    email: u.email,
    provider_id: u.providerId,
    provider: u.provider,
    profile_pic_url: u.profilePicUrl,
    created_at: d.time(u.createdAt, "user createdAt"),
  };
}

export function nodeParams<Value>(n: NewNode, d: Dialect<Value>): Params<Value> {
  return {
    machine_key: n.machineKey,
    node_key: n.nodeKey,
    disco_key: n.discoKey,
    ipv4: n.ipv4,
    ipv6: n.ipv6,
    hostname: n.hostname,
    given_name: n.givenName,
    user_id: checkOptionalId(n.userId, "node userId"),
    tags: encodeStrings(n.tags, "node tags"),
    auth_key_id: checkOptionalId(n.authKeyId, "node authKeyId"),
    register_method: n.registerMethod,
    ephemeral: d.bool(n.ephemeral),
    hostinfo: encodeObject(n.hostinfo, "node hostinfo"),
    endpoints: encodeStrings(n.endpoints, "node endpoints"),
    approved_routes: encodeStrings(n.approvedRoutes, "node approvedRoutes"),
    expiry: optionalTime(d, n.expiry, "node expiry"),
    last_seen: optionalTime(d, n.lastSeen, "node lastSeen"),
    created_at: d.time(n.createdAt, "node createdAt"),
    updated_at: d.time(n.updatedAt, "node updatedAt"),
  };
}

/** What a map session changes, with the node's id; see Store.updateNodes. */
export function nodeSessionParams<Value>(n: NodeRecord, d: Dialect<Value>): Params<Value> {
  return {
    id: checkId(n.id, "node id"),
    disco_key: n.discoKey,
    hostname: n.hostname,
    hostinfo: encodeObject(n.hostinfo, "node hostinfo"),
    endpoints: encodeStrings(n.endpoints, "node endpoints"),
    last_seen: optionalTime(d, n.lastSeen, "node lastSeen"),
    updated_at: d.time(n.updatedAt, "node updatedAt"),
  };
}

export function preAuthKeyParams<Value>(k: NewPreAuthKey, d: Dialect<Value>): Params<Value> {
  return {
    prefix: k.prefix,
    hash: k.hash,
    user_id: checkOptionalId(k.userId, "pre-auth key userId"),
    reusable: d.bool(k.reusable),
    ephemeral: d.bool(k.ephemeral),
    used: d.bool(k.used),
    tags: encodeStrings(k.tags, "pre-auth key tags"),
    expiration: optionalTime(d, k.expiration, "pre-auth key expiration"),
    created_at: d.time(k.createdAt, "pre-auth key createdAt"),
  };
}

export function apiKeyParams<Value>(k: NewApiKey, d: Dialect<Value>): Params<Value> {
  return {
    prefix: k.prefix,
    hash: k.hash,
    expiration: optionalTime(d, k.expiration, "API key expiration"),
    last_seen: optionalTime(d, k.lastSeen, "API key lastSeen"),
    created_at: d.time(k.createdAt, "API key createdAt"),
  };
}

export function adminSessionParams<Value>(s: NewAdminSession, d: Dialect<Value>): Params<Value> {
  return {
    prefix: s.prefix,
    hash: s.hash,
    identity: s.identity,
    display_name: s.displayName,
    client_addr: s.clientAddr,
    created_at: d.time(s.createdAt, "admin session createdAt"),
    expires_at: d.time(s.expiresAt, "admin session expiresAt"),
  };
}

export function auditEventParams<Value>(e: NewAuditEvent, d: Dialect<Value>): Params<Value> {
  return {
    at: d.time(e.at, "audit event at"),
    actor: e.actor,
    action: e.action,
    target: e.target,
    details: encodeObject(e.details, "audit event details") ?? "{}",
    client_addr: e.clientAddr,
  };
}

// ---- decoding -------------------------------------------------------------------------------

const optionalNumber = (v: unknown) => v === null ? null : Number(v);

export function userFromRow(r: Row): UserRecord {
  return {
    id: Number(r.id),
    name: String(r.name),
    displayName: String(r.display_name),
    email: String(r.email),
    providerId: String(r.provider_id),
    provider: String(r.provider),
    profilePicUrl: String(r.profile_pic_url),
    createdAt: decodeTime(r.created_at, `users row ${r.id} created_at`),
  };
}

export function nodeFromRow<Value>(r: Row, d: Dialect<Value>): NodeRecord {
  const where = `nodes row ${r.id}`;
  return {
    id: Number(r.id),
    machineKey: String(r.machine_key),
    nodeKey: String(r.node_key),
    discoKey: String(r.disco_key),
    ipv4: r.ipv4 === null ? null : String(r.ipv4),
    ipv6: r.ipv6 === null ? null : String(r.ipv6),
    hostname: String(r.hostname),
    givenName: String(r.given_name),
    userId: optionalNumber(r.user_id),
    tags: decodeStrings(r.tags, `${where} tags`),
    authKeyId: optionalNumber(r.auth_key_id),
    registerMethod: String(r.register_method) as RegisterMethod,
    ephemeral: d.readBool(r.ephemeral),
    hostinfo: decodeObject(r.hostinfo, `${where} hostinfo`),
    endpoints: decodeStrings(r.endpoints, `${where} endpoints`),
    approvedRoutes: decodeStrings(r.approved_routes, `${where} approved_routes`),
    expiry: decodeOptionalTime(r.expiry, `${where} expiry`),
    lastSeen: decodeOptionalTime(r.last_seen, `${where} last_seen`),
    createdAt: decodeTime(r.created_at, `${where} created_at`),
    updatedAt: decodeTime(r.updated_at, `${where} updated_at`),
  };
}

export function preAuthKeyFromRow<Value>(r: Row, d: Dialect<Value>): PreAuthKeyRecord {
  const where = `pre_auth_keys row ${r.id}`;
  return {
    id: Number(r.id),
    prefix: String(r.prefix),
    hash: String(r.hash),
    userId: optionalNumber(r.user_id),
    reusable: d.readBool(r.reusable),
    ephemeral: d.readBool(r.ephemeral),
    used: d.readBool(r.used),
    tags: decodeStrings(r.tags, `${where} tags`),
    expiration: decodeOptionalTime(r.expiration, `${where} expiration`),
    createdAt: decodeTime(r.created_at, `${where} created_at`),
  };
}

export function apiKeyFromRow(r: Row): ApiKeyRecord {
  const where = `api_keys row ${r.id}`;
  return {
    id: Number(r.id),
    prefix: String(r.prefix),
    hash: String(r.hash),
    expiration: decodeOptionalTime(r.expiration, `${where} expiration`),
    lastSeen: decodeOptionalTime(r.last_seen, `${where} last_seen`),
    createdAt: decodeTime(r.created_at, `${where} created_at`),
  };
}

export function adminSessionFromRow(r: Row): AdminSessionRecord {
  const where = `admin_sessions row ${r.id}`;
  return {
    id: Number(r.id),
    prefix: String(r.prefix),
    hash: String(r.hash),
    identity: String(r.identity),
    displayName: String(r.display_name),
    clientAddr: String(r.client_addr),
    createdAt: decodeTime(r.created_at, `${where} created_at`),
    expiresAt: decodeTime(r.expires_at, `${where} expires_at`),
  };
}

export function auditEventFromRow(r: Row): AuditEventRecord {
  const where = `audit_events row ${r.id}`;
  return {
    id: Number(r.id),
    at: decodeTime(r.at, `${where} at`),
    actor: String(r.actor),
    action: String(r.action),
    target: String(r.target),
    details: decodeObject(r.details, `${where} details`) ?? {},
    clientAddr: String(r.client_addr),
  };
}
