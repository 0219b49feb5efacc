/**
 * The HTML pages on the main listener (/register/<id>, /auth/<id>) forbid being framed by another
 * site (CSP frame-ancestors 'none'): an admin's approval page cannot be clickjacked.
 */
import assert from "node:assert/strict";
import { loadConfig } from "../lib/config/load.ts";
import { silentLogger } from "../lib/log/log.ts";
import { startServer } from "../lib/server/server.ts";
import { freePort, writeConfig } from "./helpers/server_process.ts";

Deno.test("pages: every HTML page says frame-ancestors 'none'", async () => {
  const dir = await Deno.makeTempDir({ prefix: "hsd-pages-" });
  try {
    const port = freePort();
    const { config } = loadConfig({ path: writeConfig(dir, port) });
    const server = await startServer(config, silentLogger());
    try {
      for (const path of ["/register/AAAAAAAAAAAAAAAAAAAAAAAA", "/auth/AAAAAAAAAAAAAAAAAAAAAAAA"]) {
        const res = await fetch(`http://127.0.0.1:${port}${path}`);
        await res.body?.cancel();
        assert.equal(res.status, 404, path);
        assert.match(res.headers.get("content-type") ?? "", /^text\/html/, path);
        const csp = res.headers.get("content-security-policy") ?? "";
        assert.match(csp, /(^|;\s*)frame-ancestors 'none'(;|$)/, `${path}: ${csp}`);
        assert.match(csp, /^default-src 'none'/, path);
      }
    } finally {
      await server.close();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
