/**
 * `admin`: the admin web UI's sign-in links and sessions; `audit`: its audit log (docs/ui.md).
 * headscale-deno's own commands (headscale has no web UI).
 */
import {
  AdminSessionSchema,
  AuditEventSchema,
  CreateAdminSigninLinkResponseSchema,
} from "../../../gen/headscale/v1/admin_pb.ts";
import type { CommandSpec, GroupSpec } from "../command.ts";
import { formatTimestamp, messageJson, renderTable } from "../output.ts";
import { UsageError } from "../errors.ts";

const signinLink: CommandSpec = {
  name: "signin-link",
  aliases: ["link"],
  summary: "Print a one-time link that signs a browser in to the admin UI (valid 10 minutes)",
  options: {
    label: {
      kind: "string",
      short: "l",
      description: "who the link is for (shown in sessions and the audit log)",
      default: "admin",
    },
  },
  async run(ctx) {
    const response = await ctx.call(
      "creating sign-in link",
      (c) => c.createAdminSigninLink({ label: ctx.options.string("label") ?? "admin" }),
    );
    return {
      data: messageJson(CreateAdminSigninLinkResponseSchema, response),
      human: response.url,
    };
  },
};

const sessions: CommandSpec = {
  name: "sessions",
  aliases: ["ls"],
  summary: "List the browsers signed in to the admin UI",
  async run(ctx) {
    const { sessions } = await ctx.call("listing admin sessions", (c) => c.listAdminSessions({}));
    const rows = sessions.map((s) => [
      String(s.id),
      s.displayName,
      s.identity,
      s.clientAddr,
      formatTimestamp(s.createdAt),
      formatTimestamp(s.expiration),
    ]);
    return {
      data: sessions.map((s) => messageJson(AdminSessionSchema, s)),
      human: renderTable(
        [["ID", "Admin", "Identity", "From", "Signed in", "Expires"], ...rows],
        ctx.style,
      ),
    };
  },
};

const revokeSession: CommandSpec = {
  name: "revoke-session",
  aliases: ["revoke"],
  summary: "Sign a browser out of the admin UI",
  options: { id: { kind: "id", short: "i", description: "session id", required: true } },
  async run(ctx) {
    const id = ctx.options.id("id")!;
    await ctx.call("revoking admin session", (c) => c.revokeAdminSession({ id }));
    return { data: { Result: "Session revoked" }, human: "Session revoked" };
  },
};

export const adminGroup: GroupSpec = {
  name: "admin",
  summary: "Sign in to the admin web UI and manage its sessions",
  commands: [signinLink, sessions, revokeSession],
};

const auditList: CommandSpec = {
  name: "list",
  aliases: ["ls", "show"],
  summary: "List the admin UI's audit log, newest first",
  options: {
    limit: { kind: "string", short: "n", description: "how many events", default: "100" },
  },
  async run(ctx) {
    const text = ctx.options.string("limit") ?? "100";
    const limit = Number(text);
    if (!/^\d+$/.test(text) || limit < 1 || limit > 100_000) {
      throw new UsageError(`--limit must be a number from 1 to 100000, got "${text}"`, [
        "audit",
        "list",
      ]);
    }
    const { events } = await ctx.call("listing audit events", (c) => c.listAuditEvents({ limit }));
    const rows = events.map((e) => [
      formatTimestamp(e.time),
      e.actor,
      e.action,
      e.target,
      e.clientAddr,
      e.details === "{}" ? "" : e.details,
    ]);
    return {
      data: events.map((e) => messageJson(AuditEventSchema, e)),
      human: renderTable(
        [["Time", "Actor", "Action", "Target", "From", "Details"], ...rows],
        ctx.style,
      ),
    };
  },
};

export const auditGroup: GroupSpec = {
  name: "audit",
  summary: "The admin UI's audit log",
  commands: [auditList],
};
