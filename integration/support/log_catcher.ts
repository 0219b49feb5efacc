/**
 * A logtail server on the test bridge: what a client's log uploads deliver (`TS_LOG_TARGET`,
 * DaemonOptions.logTarget). Bodies arrive as JSON, zstd-compressed when large.
 */
import { zstdDecompressSync } from "node:zlib";
import type { Harness } from "../harness.ts";

export interface LogCatcher {
  /** The URL for `logTarget`. */
  url: string;
  /** Every upload's text so far, in arrival order. */
  uploads: string[];
}

/** Starts a catcher on a free port of the bridge address; it stops when the harness closes. */
export function startLogCatcher(harness: Harness): LogCatcher {
  const listen = harness.listenAddress();
  const uploads: string[] = [];
  const server = Deno.serve(
    { hostname: listen.host, port: listen.port, onListen() {} },
    async (req) => {
      const body = new Uint8Array(await req.arrayBuffer());
      const text = req.headers.get("content-encoding") === "zstd"
        ? new TextDecoder().decode(zstdDecompressSync(body))
        : new TextDecoder().decode(body);
      uploads.push(text);
      return new Response("{}", { headers: { "content-type": "application/json" } });
    },
  );
  harness.onClose(() => server.shutdown());
  return { url: listen.url, uploads };
}
