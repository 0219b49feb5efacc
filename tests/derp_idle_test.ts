import assert from "node:assert/strict";
import { DerpClient } from "../lib/derp/client.ts";
import { startTestDerp } from "./helpers/derp.ts";

Deno.test("derp: 1,000 idle connections while two others exchange packets", async () => {
  const d = await startTestDerp();
  const idle: DerpClient[] = [];
  try {
    for (let batch = 0; batch < 10; batch++) {
      const conns = await Promise.all(
        Array.from({ length: 100 }, () => DerpClient.connect({ url: d.url })),
      );
      idle.push(...conns);
    }
    const a = await DerpClient.connect({ url: d.url });
    const b = await DerpClient.connect({ url: d.url });
    idle.push(a, b);
    await a.ping();
    await b.ping();
    assert.equal(d.server.stats().clients, 1002);
    assert.equal(d.server.stats().uniqueKeys, 1002);

    const rounds = 200;
    for (let i = 0; i < rounds; i++) {
      const body = new Uint8Array(1200).fill(i & 0xff);
      a.send(b.publicKey, body);
      const got = await b.recvType("packet");
      assert.deepEqual(got.source, a.publicKey);
      assert.equal(got.data[0], i & 0xff);
      b.send(a.publicKey, got.data);
      assert.equal((await a.recvType("packet")).data[1199], i & 0xff);
    }
    assert.equal(d.server.stats().packetsForwarded, 2 * rounds);
    // Every idle client is still connected and answering.
    const sample = [idle[0], idle[499], idle[999]];
    await Promise.all(sample.map((c) => c.ping()));
  } finally {
    await Promise.all(idle.map((c) => c.close()));
    await d.close();
  }
  assert.equal(d.server.stats().connections, 0);
});
