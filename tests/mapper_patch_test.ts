import assert from "node:assert/strict";
import { peerChangeJson } from "../lib/mapper/mapper.ts";
import { type Change, nodeChange, patchable } from "../lib/state/events.ts";

Deno.test("patch: a PeerChange carries every patch field, under its tailcfg name, in wire order", () => {
  const json = peerChangeJson(7, {
    keyExpiry: new Date("2027-01-02T03:04:05.000Z"),
    lastSeen: new Date("2026-12-01T00:00:00.000Z"),
    online: false,
    discoKey: "discokey:ab",
    nodeKey: "nodekey:cd",
    endpoints: ["192.0.2.1:41641"],
    capVersion: 130,
    homeDerp: 999,
  });
  assert.equal(
    json,
    '{"NodeID":7,"DERPRegion":999,"Cap":130,"Endpoints":["192.0.2.1:41641"],"Key":"nodekey:cd",' +
      '"DiscoKey":"discokey:ab","Online":false,"LastSeen":"2026-12-01T00:00:00.000Z",' +
      '"KeyExpiry":"2027-01-02T03:04:05.000Z"}',
  );
  // An empty endpoint list is a change; zero, "" and unset are not sent.
  assert.equal(peerChangeJson(3, { endpoints: [] }), '{"NodeID":3,"Endpoints":[]}');
  assert.equal(peerChangeJson(3, { discoKey: "", capVersion: 0 }), '{"NodeID":3}');
});

Deno.test("patch: what a PeerChange cannot say becomes a full node update, once, in State's terms", () => {
  assert.ok(patchable({ endpoints: [] }));
  assert.ok(!patchable({ keyExpiry: null }), "a key that stops expiring");
  assert.ok(!patchable({ homeDerp: 0 }), "a lost home DERP");
  const cases: [Parameters<typeof nodeChange>[1], Change][] = [
    [{ endpoints: ["192.0.2.1:1"] }, {
      kind: "node-patched",
      nodeId: 1,
      patch: { endpoints: ["192.0.2.1:1"] },
    }],
    [{ nodeKey: "nodekey:ab", keyExpiry: null }, {
      kind: "node-updated",
      nodeId: 1,
      peersOnly: false,
    }],
    [{ homeDerp: 0, endpoints: [] }, { kind: "node-updated", nodeId: 1, peersOnly: true }],
  ];
  for (const [patch, want] of cases) assert.deepEqual(nodeChange(1, patch), want);
});
