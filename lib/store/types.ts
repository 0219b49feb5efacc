/**
 * The durable records and the one interface both database backends implement.
 *
 * The server keeps its working state in memory (lib/state); the store is the durable copy. Every
 * method that changes data commits before its promise resolves, so an acknowledged write survives a
 * crash. Methods that touch several rows run in one transaction.
 */

export interface UserRecord {
  id: number;
  name: string;
  displayName: string;
  email: string;
  /** OIDC subject; "" for local users. */
  providerId: string;
  /** "" for local users, "oidc" otherwise. */
  provider: string;
  profilePicUrl: string;
  createdAt: Date;
}

export type RegisterMethod = "authkey" | "cli" | "oidc" | "unspecified";

export interface NodeRecord {
  id: number;
  /** Text forms: `mkey:…`, `nodekey:…`, `discokey:…` (discokey may be "" before the first map). */
  machineKey: string;
  nodeKey: string;
  discoKey: string;
  ipv4: string | null;
  ipv6: string | null;
  /** The hostname the client reported. */
  hostname: string;
  /** The DNS-safe, unique name the node has in the tailnet. */
  givenName: string;
  /** Owner; null for a tagged node (tags then own it). */
  userId: number | null;
  tags: string[];
  authKeyId: number | null;
  registerMethod: RegisterMethod;
  ephemeral: boolean;
  /** The client's last tailcfg.Hostinfo, as JSON. */
  hostinfo: Record<string, unknown> | null;
  endpoints: string[];
  approvedRoutes: string[];
  /** Key expiry; null = never expires. */
  expiry: Date | null;
  lastSeen: Date | null;
  createdAt: Date;
  updatedAt: Date;
}

export interface PreAuthKeyRecord {
  id: number;
  /** The public part of `hskey-auth-<prefix>-<secret>`, used to find the row. */
  prefix: string;
  /** Slow hash of the secret part (see lib/auth/secrets.ts). */
  hash: string;
  /** Null for a key that only makes tagged nodes. */
  userId: number | null;
  reusable: boolean;
  ephemeral: boolean;
  used: boolean;
  tags: string[];
  expiration: Date | null;
  createdAt: Date;
}

export interface ApiKeyRecord {
  id: number;
  /** The public part of `hskey-api-<prefix>-<secret>`. */
  prefix: string;
  hash: string;
  expiration: Date | null;
  lastSeen: Date | null;
  createdAt: Date;
}

/** A signed-in admin's browser session (lib/ui). */
export interface AdminSessionRecord {
  id: number;
  /** The public part of the cookie `<prefix>.<secret>`, used to find the row. */
  prefix: string;
  /** Hash of the secret part (lib/auth/secrets.ts); the secret itself is never stored. */
  hash: string;
  /** Who: `oidc:<issuer>/<subject>` or `link:<label>` (a CLI one-time link). */
  identity: string;
  /** For people: the e-mail or name the provider gave, or the link's label. */
  displayName: string;
  /** Client address at sign-in (after trusted_proxies). */
  clientAddr: string;
  createdAt: Date;
  expiresAt: Date;
}

/** One change made, or sign-in attempted, through the admin UI. */
export interface AuditEventRecord {
  id: number;
  at: Date;
  /** The admin's identity (AdminSessionRecord.identity), or what was claimed for failures. */
  actor: string;
  /** e.g. `node.rename`, `user.create`, `signin.link`, `signin.failed`. */
  action: string;
  /** What it was done to, e.g. `node:12`, `user:alice`; "" when nothing. */
  target: string;
  /** More about it, never a secret. */
  details: Record<string, unknown>;
  clientAddr: string;
}

export type NewUser = Omit<UserRecord, "id">;
export type NewNode = Omit<NodeRecord, "id">;
export type NewPreAuthKey = Omit<PreAuthKeyRecord, "id">;
export type NewApiKey = Omit<ApiKeyRecord, "id">;
export type NewAdminSession = Omit<AdminSessionRecord, "id">;
export type NewAuditEvent = Omit<AuditEventRecord, "id">;

/** Thrown for constraint violations (duplicate name, duplicate IP, …); the message says which. */
export class StoreConflictError extends Error {
  override name = "StoreConflictError";
  /** True when a unique value (name, key, address) is taken, false for other conflicts. */
  readonly duplicate: boolean;
  constructor(message: string, options: { duplicate?: boolean } = {}) {
    super(message);
    this.duplicate = options.duplicate ?? false;
  }
}

/** Thrown when a row to update or delete does not exist. */
export class StoreNotFoundError extends Error {
  override name = "StoreNotFoundError";
}

/** Why the database could not be used: what an admin has to fix. */
export type StoreFault = "full" | "read-only" | "unreachable" | "busy" | "io-error";

/**
 * Thrown when the database cannot do what was asked (disk full, read-only, unreachable, locked,
 * I/O error). A write that throws this did not commit (SQLite) or, for PostgreSQL, was not
 * confirmed; the message names the database and the cause, never a password.
 */
export class StoreUnavailableError extends Error {
  override name = "StoreUnavailableError";
  constructor(
    readonly fault: StoreFault,
    readonly database: string,
    detail: string,
    options?: ErrorOptions,
  ) {
    super(`${database} ${FAULT_WORDS[fault]} (${detail})`, options);
  }
}

const FAULT_WORDS: Record<StoreFault, string> = {
  full: "is full",
  "read-only": "is read-only",
  unreachable: "is unreachable",
  busy: "is busy (locked by another process)",
  "io-error": "had an I/O error",
};

/** Thrown when the database was written by a newer version of headscale-deno. */
export class StoreVersionError extends Error {
  override name = "StoreVersionError";
}

export interface Store {
  readonly kind: "sqlite" | "postgres";
  /** Applies pending migrations in order; refuses a database from a newer version. */
  migrate(): Promise<void>;
  /** Resolves when the database answers a trivial query; rejects otherwise. */
  ping(): Promise<void>;
  /**
   * Commits a one-row write (the health check row): resolves when the database takes writes,
   * rejects with StoreUnavailableError saying why when it does not (full, read-only, gone).
   */
  checkWritable(): Promise<void>;
  close(): Promise<void>;

  listUsers(): Promise<UserRecord[]>;
  insertUser(user: NewUser): Promise<UserRecord>;
  updateUser(user: UserRecord): Promise<void>;
  /** Deletes the user and its pre-auth keys; refuses (StoreConflictError) while it owns nodes. */
  deleteUser(id: number): Promise<void>;

  listNodes(): Promise<NodeRecord[]>;
  /**
   * Creates a node, or replaces the row with the same id when `node.id` is set, and marks the
   * pre-auth key used (when `useKeyId` is given and the key is not reusable), in one transaction.
   */
  saveNode(node: NewNode | NodeRecord, useKeyId?: number): Promise<NodeRecord>;
  /**
   * Writes what a map session changes — discoKey, hostname, hostinfo, endpoints, lastSeen,
   * updatedAt — for many nodes in one transaction. Other fields change only through saveNode, so
   * a batch from an older snapshot cannot undo them. Nodes deleted meanwhile are skipped.
   */
  updateNodes(nodes: NodeRecord[]): Promise<void>;
  deleteNode(id: number): Promise<void>;

  listPreAuthKeys(): Promise<PreAuthKeyRecord[]>;
  insertPreAuthKey(key: NewPreAuthKey): Promise<PreAuthKeyRecord>;
  updatePreAuthKey(key: PreAuthKeyRecord): Promise<void>;
  deletePreAuthKey(id: number): Promise<void>;

  listApiKeys(): Promise<ApiKeyRecord[]>;
  insertApiKey(key: NewApiKey): Promise<ApiKeyRecord>;
  updateApiKey(key: ApiKeyRecord): Promise<void>;
  deleteApiKey(id: number): Promise<void>;

  /** The policy stored for `policy.mode: database`; null when none was set. */
  getPolicy(): Promise<string | null>;
  setPolicy(data: string): Promise<void>;

  listAdminSessions(): Promise<AdminSessionRecord[]>;
  insertAdminSession(session: NewAdminSession): Promise<AdminSessionRecord>;
  deleteAdminSession(id: number): Promise<void>;

  insertAuditEvent(event: NewAuditEvent): Promise<AuditEventRecord>;
  /** The newest `limit` events, newest first. */
  listAuditEvents(limit: number): Promise<AuditEventRecord[]>;
}
