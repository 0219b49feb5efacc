/**
 * A name that is already taken is a conflict, not an internal error: REST answers 409 and
 * Connect/gRPC AlreadyExists, with a message naming the user.
 */
import assert from "node:assert/strict";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { HeadscaleService } from "../gen/headscale/v1/headscale_pb.ts";
import { startApiServer } from "./helpers/api_server.ts";
import { openMemoryState } from "./helpers/memory_state.ts";

Deno.test("api: creating a user whose name is taken is 409 / AlreadyExists", async () => {
  const { store, state } = await openMemoryState();
  const api = await startApiServer(state, store);
  try {
    const post = () =>
      fetch(`${api.base}/api/v1/user`, {
        method: "POST",
        headers: { authorization: `Bearer ${api.key}`, "content-type": "application/json" },
        body: JSON.stringify({ name: "alice" }),
      });
    const first = await post();
    assert.equal(first.status, 200);
    await first.body?.cancel();
    const again = await post();
    assert.equal(again.status, 409);
    const body = await again.json();
    assert.equal(body.code, Code.AlreadyExists);
    assert.match(body.message, /alice/);
    assert.deepEqual(body.details, []);

    const client = createClient(
      HeadscaleService,
      createConnectTransport({ baseUrl: api.base, httpVersion: "1.1" }),
    );
    await assert.rejects(
      client.createUser({ name: "alice" }, { headers: { authorization: `Bearer ${api.key}` } }),
      (e: unknown) => e instanceof ConnectError && e.code === Code.AlreadyExists,
    );
    assert.equal(state.listUsers().filter((u) => u.name === "alice").length, 1);
  } finally {
    await api.close();
    await store.close();
  }
});
