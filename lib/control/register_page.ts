/**
 * `GET /register/<id>`: the page an interactive login's AuthURL opens. Plain HTML that tells
 * the user which command an admin runs to let the machine in.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import { isAuthId, type PendingAuths } from "./pending_auths.ts";

const CLI = "headscale-deno";

function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function page(title: string, body: string): string {
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

/** A node:http handler for `GET /register/<id>`. */
export function createRegisterPageHandler(
  pendingAuths: PendingAuths,
): (req: IncomingMessage, res: ServerResponse) => void {
  return (req, res) => {
    const path = (req.url ?? "/").split("?")[0];
    const id = path.replace(/^\/register\//, "").replace(/\/+$/, "");
    const send = (status: number, html: string) => {
      res.writeHead(status, {
        "content-type": "text/html; charset=utf-8",
        "cache-control": "no-store",
        "x-content-type-options": "nosniff",
        "content-security-policy": "default-src 'none'; style-src 'unsafe-inline'",
      });
      res.end(req.method === "HEAD" ? undefined : html);
    };
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
    send(200, registerPageHtml(id, request.hostname));
  };
}
