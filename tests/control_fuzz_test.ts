/**
 * Hostile input never crashes the control plane: random JSON in every register and map field,
 * and garbage instead of HTTP/2, get an error for that request or connection only.
 */
import assert from "node:assert/strict";
import fc from "fast-check";
import { duplexPair } from "./helpers/control_client.ts";
import { randomKey, startTestControl } from "./helpers/control.ts";

const anyValue = fc.oneof(
  fc.jsonValue(),
  fc.constantFrom(
    randomKey("nodekey:"),
    "nodekey:" + "0".repeat(64),
    "2001-01-01T00:00:00Z",
    "1970-01-01T00:02:03Z",
    "zstd",
    "http://127.0.0.1:8080/register/AAAAAAAAAAAAAAAAAAAAAAAA",
  ),
);

const request = (fields: string[]) =>
  fc.record(Object.fromEntries(fields.map((f) => [f, anyValue])), { requiredKeys: [] });

Deno.test("fuzz: random register and map requests get an answer, never a crash", async () => {
  const t = await startTestControl({ tuning: { followupWaitMs: 5 } });
  try {
    const alice = await t.user("alice");
    const key = await t.authKey({ user: alice, reusable: true });
    const mkey = randomKey("mkey:");
    const nkey = randomKey("nodekey:");
    const client = t.connect(mkey);
    const reg = await client.register({
      Version: 130,
      NodeKey: nkey,
      Auth: { AuthKey: key },
      Hostinfo: { Hostname: "fuzz" },
    });
    assert.equal(reg.status, 200);

    await fc.assert(
      fc.asyncProperty(
        request(["Version", "NodeKey", "OldNodeKey", "Auth", "Expiry", "Followup", "Hostinfo"]),
        fc.boolean(),
        async (body, withValidBase) => {
          const full = withValidBase
            ? { Version: 130, NodeKey: randomKey("nodekey:"), ...body }
            : body;
          const r = await client.register(full);
          assert.ok([200, 400, 401, 404, 413].includes(r.status), `status ${r.status}: ${r.text}`);
        },
      ),
      { numRuns: 150 },
    );

    await fc.assert(
      fc.asyncProperty(
        request(["Version", "DiscoKey", "Hostinfo", "Endpoints", "Compress", "OmitPeers"]),
        async (body) => {
          const stream = client.map({ ...body, Version: 130, NodeKey: nkey, Stream: false });
          const status = await stream.status;
          assert.ok([200, 400].includes(status), `status ${status}`);
          if (status === 200 && !body.OmitPeers) {
            const m = await stream.next();
            assert.ok(m?.Node, "a one-shot map");
          }
          stream.close();
        },
      ),
      { numRuns: 150 },
    );

    // Whatever was stored, the peer JSON it produces still has the wire types Go expects.
    const node = t.state.nodeByNodeKey(nkey)!;
    const peer = JSON.parse(t.mapper.peerJsonOf(node.id)!);
    assert.ok(Array.isArray(peer.Endpoints ?? []));
    for (const e of peer.Endpoints ?? []) assert.match(e, /^(\d+\.){3}\d+:\d+$|^\[.+\]:\d+$/);
    assert.ok(peer.DiscoKey === undefined || /^discokey:[0-9a-f]{64}$/.test(peer.DiscoKey));

    const after = await client.register({ Version: 130, NodeKey: nkey });
    assert.equal(after.status, 200, "the server still answers");
  } finally {
    await t.close();
  }
});

Deno.test("fuzz: garbage instead of HTTP/2 ends only that connection", async () => {
  const t = await startTestControl();
  try {
    for (
      const garbage of ["GET / HTTP/1.1\r\n\r\n", "\x00".repeat(100), "PRI * HTTP/2.0\r\n\r\nXX"]
    ) {
      const [server, client] = duplexPair();
      const closed = new Promise<void>((resolve) => client.on("close", () => resolve()));
      client.on("error", () => {});
      client.on("data", () => {});
      t.control.handleNoiseConnection(server, randomKey("mkey:"), 130);
      client.write(garbage);
      await closed;
    }
    const ok = await t.connect(randomKey("mkey:")).register({
      Version: 130,
      NodeKey: randomKey("nodekey:"),
    });
    assert.equal(ok.status, 200);
  } finally {
    await t.close();
  }
});
