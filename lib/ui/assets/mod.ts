/**
 * The admin UI's static files, from string constants (so `deno compile` includes them), each
 * served at `<path>/assets/<content hash>/<name>` with a year of caching: a new build changes
 * the hash, so browsers never keep a stale file.
 */
import { createHash } from "node:crypto";
import { SCRIPT_JS } from "./script.ts";
import { STYLE_CSS } from "./style.ts";

export interface Asset {
  name: string;
  contentType: string;
  body: string;
  /** First 16 hex of the SHA-256 of the body. */
  hash: string;
}

function asset(name: string, contentType: string, body: string): Asset {
  const hash = createHash("sha256").update(body).digest("hex").slice(0, 16);
  return { name, contentType, body, hash };
}

export interface Assets {
  /** The URL path (under the UI's path) of an asset, hash included. */
  url(name: "ui.css" | "ui.js"): string;
  /** The asset for a request path below `<path>/assets/`, or undefined. */
  find(rest: string): Asset | undefined;
}

export function createAssets(base: string): Assets {
  const all = new Map<string, Asset>([
    ["ui.css", asset("ui.css", "text/css; charset=utf-8", STYLE_CSS)],
    ["ui.js", asset("ui.js", "text/javascript; charset=utf-8", SCRIPT_JS)],
  ]);
  return {
    url(name) {
      const a = all.get(name)!;
      return `${base}/assets/${a.hash}/${a.name}`;
    },
    find(rest) {
      const m = /^([0-9a-f]{16})\/([\w.-]+)$/.exec(rest);
      const a = m ? all.get(m[2]) : undefined;
      return a && a.hash === m![1] ? a : undefined;
    },
  };
}
