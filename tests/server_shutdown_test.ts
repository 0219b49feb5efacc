/**
 * Shutdown order: the main listener stops accepting before sessions are closed, so a client that
 * redials as its map stream ends is refused (and retries against the next server) instead of
 * completing a Noise handshake with a server that is about to exit.
 */
import assert from "node:assert/strict";
import { loadConfig } from "../lib/config/load.ts";
import { silentLogger } from "../lib/log/log.ts";
import { startServer } from "../lib/server/server.ts";
import { freePort, writeConfig } from "./helpers/server_process.ts";

Deno.test("server: close refuses new connections before it closes the open ones", async () => {
  const dir = await Deno.makeTempDir({ prefix: "hsd-shutdown-" });
  try {
    const port = freePort();
    const { config } = loadConfig({ path: writeConfig(dir, port) });
    const server = await startServer(config, silentLogger());

    // A connection made while the server runs stays open until close() ends it.
    const early = await Deno.connect({ hostname: "127.0.0.1", port });
    const closing = server.close();
    await assert.rejects(
      Deno.connect({ hostname: "127.0.0.1", port }),
      Deno.errors.ConnectionRefused,
      "a connection attempted once close() has begun is refused",
    );
    await closing;
    const buf = new Uint8Array(16);
    assert.equal(await early.read(buf), null, "close() ended the connection opened before it");
    early.close();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
