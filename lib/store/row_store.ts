/**
 * The Store methods that move one record to or from one row of its table, written once. A
 * backend supplies its Dialect and four row operations by table and id; what differs between
 * databases (saving a node with its key, session batches, deleting a user, migrations, policy,
 * connections, transactions, error codes) stays in the backend.
 */
import { checkId } from "./codec.ts";
import {
  adminSessionFromRow,
  adminSessionParams,
  apiKeyFromRow,
  apiKeyParams,
  auditEventFromRow,
  auditEventParams,
  type Dialect,
  nodeFromRow,
  type Params,
  preAuthKeyFromRow,
  preAuthKeyParams,
  type Row,
  type Table,
  userFromRow,
  userParams,
} from "./rows.ts";
import type {
  AdminSessionRecord,
  ApiKeyRecord,
  AuditEventRecord,
  NewAdminSession,
  NewApiKey,
  NewAuditEvent,
  NewPreAuthKey,
  NewUser,
  NodeRecord,
  PreAuthKeyRecord,
  UserRecord,
} from "./types.ts";

export abstract class RowStore<Value> {
  protected abstract readonly dialect: Dialect<Value>;

  /** Every row of `table`, by id. */
  protected abstract listRows(table: Table): Promise<Row[]>;
  /** Inserts `row` and returns it as stored, id included; constraint failures as Store errors. */
  protected abstract insertRow(table: Table, row: Params<Value>): Promise<Row>;
  /** Writes `row` over the row with `id`; StoreNotFoundError when there is none. */
  protected abstract updateRow(table: Table, id: number, row: Params<Value>): Promise<void>;
  /** Deletes the row with `id`; StoreNotFoundError when there is none. */
  protected abstract deleteRow(table: Table, id: number): Promise<void>;
  /** The newest `limit` rows of `table` (highest ids first). */
  protected abstract listNewestRows(table: Table, limit: number): Promise<Row[]>;

  // ---- users --------------------------------------------------------------------------------

  async listUsers(): Promise<UserRecord[]> {
    return (await this.listRows("users")).map(userFromRow);
  }

  async insertUser(user: NewUser): Promise<UserRecord> {
    return userFromRow(await this.insertRow("users", userParams(user, this.dialect)));
  }

  async updateUser(user: UserRecord): Promise<void> {
    const id = checkId(user.id, "user id");
    await this.updateRow("users", id, userParams(user, this.dialect));
  }

  // ---- nodes --------------------------------------------------------------------------------

  async listNodes(): Promise<NodeRecord[]> {
    return (await this.listRows("nodes")).map((r) => nodeFromRow(r, this.dialect));
  }

  async deleteNode(id: number): Promise<void> {
    await this.deleteRow("nodes", checkId(id, "node id"));
  }

  // ---- pre-auth keys ------------------------------------------------------------------------

  async listPreAuthKeys(): Promise<PreAuthKeyRecord[]> {
    return (await this.listRows("pre_auth_keys")).map((r) => preAuthKeyFromRow(r, this.dialect));
  }

  async insertPreAuthKey(key: NewPreAuthKey): Promise<PreAuthKeyRecord> {
    const saved = await this.insertRow("pre_auth_keys", preAuthKeyParams(key, this.dialect));
    return preAuthKeyFromRow(saved, this.dialect);
  }

  async updatePreAuthKey(key: PreAuthKeyRecord): Promise<void> {
    const id = checkId(key.id, "pre-auth key id");
    await this.updateRow("pre_auth_keys", id, preAuthKeyParams(key, this.dialect));
  }

  async deletePreAuthKey(id: number): Promise<void> {
    await this.deleteRow("pre_auth_keys", checkId(id, "pre-auth key id"));
  }

  // ---- API keys -----------------------------------------------------------------------------

  async listApiKeys(): Promise<ApiKeyRecord[]> {
    return (await this.listRows("api_keys")).map(apiKeyFromRow);
  }

  async insertApiKey(key: NewApiKey): Promise<ApiKeyRecord> {
    return apiKeyFromRow(await this.insertRow("api_keys", apiKeyParams(key, this.dialect)));
  }

  async updateApiKey(key: ApiKeyRecord): Promise<void> {
    const id = checkId(key.id, "API key id");
    await this.updateRow("api_keys", id, apiKeyParams(key, this.dialect));
  }

  async deleteApiKey(id: number): Promise<void> {
    await this.deleteRow("api_keys", checkId(id, "API key id"));
  }

  // ---- admin UI sessions and audit log --------------------------------------------------------

  async listAdminSessions(): Promise<AdminSessionRecord[]> {
    return (await this.listRows("admin_sessions")).map(adminSessionFromRow);
  }

  async insertAdminSession(session: NewAdminSession): Promise<AdminSessionRecord> {
    const row = adminSessionParams(session, this.dialect);
    return adminSessionFromRow(await this.insertRow("admin_sessions", row));
  }

  async deleteAdminSession(id: number): Promise<void> {
    await this.deleteRow("admin_sessions", checkId(id, "admin session id"));
  }

  async insertAuditEvent(event: NewAuditEvent): Promise<AuditEventRecord> {
    const row = auditEventParams(event, this.dialect);
    return auditEventFromRow(await this.insertRow("audit_events", row));
  }

  async listAuditEvents(limit: number): Promise<AuditEventRecord[]> {
    const n = Math.max(1, Math.min(Math.trunc(limit) || 1, 100_000));
    return (await this.listNewestRows("audit_events", n)).map(auditEventFromRow);
  }
}
