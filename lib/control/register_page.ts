/**
 * `GET /register/<id>`: the page an interactive login's AuthURL opens; `GET /auth/<id>`: the
 * page an SSH check's message points at. Plain HTML that tells the user which command an admin
 * runs to let the machine (or the SSH connection) in.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import { isAuthId } from "../auth_requests/ids.ts";
import type { PendingAuths } from "./pending_auths.ts";
import type { SshChecks } from "./ssh_check.ts";
import type { OidcWeb } from "../oidc/web.ts";

const CLI = "headscale-deno";

export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

export function page(title: string, body: string): string {
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeHtml(title)}</title>
<style>
body { font-family: system-ui, sans-serif; max-width: 46rem; margin: 3rem auto; padding: 0 1rem; }
pre { background: #f2f2f2; padding: 1rem; overflow-x: auto; }
</style>
</head>
<body>
${body}
</body>
</html>
`;
}

export function registerPageHtml(id: string, hostname: string): string {
  const command = `${CLI} auth register --auth-id ${id} --user <USERNAME>`;
  return page(
    "Machine registration",
    `<h1>Machine registration</h1>
<p>The machine <b>${escapeHtml(hostname)}</b> is waiting to join the tailnet.</p>
<p>Ask an administrator of this server to run:</p>
<pre><code>${escapeHtml(command)}</code></pre>
<p>To refuse it: <code>${escapeHtml(`${CLI} auth reject --auth-id ${id}`)}</code></p>`,
  );
}

type PageHandler = (req: IncomingMessage, res: ServerResponse) => void;

/** The id after `prefix` in the request path, and a sender of HTML pages. */
function pageRequest(req: IncomingMessage, res: ServerResponse, prefix: string) {
  const path = (req.url ?? "/").split("?")[0];
  const id = path.slice(prefix.length).replace(/\/+$/, "");
  const send = (status: number, html: string) => {
    res.writeHead(status, {
      "content-type": "text/html; charset=utf-8",
      "cache-control": "no-store",
      "x-content-type-options": "nosniff",
      // frame-ancestors: no other site may frame the page (clickjacking an admin's approval).
      "content-security-policy":
        "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'",
    });
    res.end(req.method === "HEAD" ? undefined : html);
  };
  return { id, send };
}

export function sshCheckPageHtml(id: string, oidc = false): string {
  const signIn = oidc
    ? `<p><a href="/auth/${escapeHtml(id)}/oidc">Sign in with your identity provider</a> to approve
it yourself (as the owner of the machine the connection comes from).</p>
<p>Or ask an administrator to run:</p>`
    : "<p>An SSH connection is waiting for an administrator's approval. Ask one to run:</p>";
  return page(
    "SSH check",
    `<h1>SSH check</h1>
${signIn}
<pre><code>${escapeHtml(`${CLI} auth approve --auth-id ${id}`)}</code></pre>
<p>To refuse it: <code>${escapeHtml(`${CLI} auth reject --auth-id ${id}`)}</code></p>`,
  );
}

/** A node:http handler for `GET /auth/<id>` (SSH checks). */
export function createAuthPageHandler(
  sshChecks: SshChecks,
  oidc: OidcWeb | null = null,
): PageHandler {
  return (req, res) => {
    const request = pageRequest(req, res, "/auth/");
    const { send } = request;
    // `/auth/<id>/oidc`: approve by signing in with the provider.
    const viaOidc = oidc !== null && request.id.endsWith("/oidc");
    const id = viaOidc ? request.id.slice(0, -"/oidc".length) : request.id;
    if (!isAuthId(id) || !sshChecks.has(id)) {
      send(
        404,
        page(
          "Unknown check",
          `<h1>Unknown check</h1>
<p>This link is unknown, expired or already decided. Connect again for a new one.</p>`,
        ),
      );
      return;
    }
    if (viaOidc) void oidc!.start(req, res, "ssh-check", id);
    else send(200, sshCheckPageHtml(id, oidc !== null));
  };
}

/** A node:http handler for `GET /register/<id>`. */
export function createRegisterPageHandler(
  pendingAuths: PendingAuths,
  oidc: OidcWeb | null = null,
): PageHandler {
  return (req, res) => {
    const { id, send } = pageRequest(req, res, "/register/");
    const request = isAuthId(id) ? pendingAuths.get(id) : undefined;
    if (!request) {
      send(
        404,
        page(
          "Unknown registration",
          `<h1>Unknown registration</h1>
<p>This login link is unknown or expired. Run <code>tailscale up</code> again for a new one.</p>`,
        ),
      );
      return;
    }
    // With OIDC the login goes to the provider (the admin's `auth register` still works).
    if (oidc && pendingAuths.isPending(id)) void oidc.start(req, res, "register", id);
    else send(200, registerPageHtml(id, request.hostname));
  };
}
