import assert from "node:assert/strict";
import fc from "fast-check";
import { parseConfigText } from "../lib/config/load.ts";
import { randomKey, TEST_DERP_MAP } from "./helpers/control.ts";
import { decodeFrames, splitZstdFrames } from "../lib/mapper/framing.ts";
import { Mapper } from "../lib/mapper/mapper.ts";
import type { NodeRecord } from "../lib/store/types.ts";
import { testUser } from "./helpers/map_fixtures.ts";
import type { MapResponse } from "../lib/tailcfg/types.ts";

const { config } = parseConfigText("", { env: {} });

function tailnet(ids: number[]) {
  const nodes = new Map<number, NodeRecord>();
  for (const id of ids) {
    nodes.set(id, {
      id,
      machineKey: randomKey("mkey:"),
      nodeKey: randomKey("nodekey:"),
      discoKey: randomKey("discokey:"),
      ipv4: `100.64.${id >> 8}.${id & 255}`,
      ipv6: null,
      hostname: `h${id}`,
      givenName: `h${id}`,
      userId: (id % 3) + 1,
      tags: id % 7 === 0 ? ["tag:server"] : [],
      authKeyId: null,
      registerMethod: "cli",
      ephemeral: false,
      hostinfo: { Hostname: `h${id}`, OS: "linux" },
      endpoints: [`192.0.2.${id & 255}:41641`],
      approvedRoutes: [],
      expiry: null,
      lastSeen: null,
      createdAt: new Date(0),
      updatedAt: new Date(0),
    });
  }
  const state = {
    getNode: (id: number) => nodes.get(id),
    getUser: (id: number) => id <= 3 ? testUser(id) : undefined,
    listNodes: () => [...nodes.values()],
    isOnline: (id: number) => id % 2 === 0,
    primaryRoutesOf: () => [],
    capVersionOf: () => undefined,
  };
  const mapper = new Mapper({
    state,
    config,
    derpMap: () => TEST_DERP_MAP,
    now: () => new Date(0),
  });
  return { nodes, mapper, state };
}

function decodeMessage(frame: Uint8Array): MapResponse {
  const { messages, rest } = decodeFrames(frame, true);
  assert.equal(messages.length, 1);
  assert.equal(rest.byteLength, 0);
  return JSON.parse(messages[0]);
}

function normalized(m: MapResponse) {
  const peers = [...m.Peers!].sort((a, b) => a.ID - b.ID);
  const profiles = [...m.UserProfiles!].sort((a, b) => a.ID - b.ID);
  return { ...m, Peers: peers, UserProfiles: profiles };
}

Deno.test("full map from cached compressed slices equals the plain full map", () => {
  // 128 per slice (16 in the own range): 128 and 129 share a small slice, 200 and 300 are alone
  // in theirs, and 300 in its range.
  const ids = [...Array.from({ length: 129 }, (_, i) => i + 1), 200, 300];
  const { mapper } = tailnet(ids);
  for (const self of [1, 15, 16, 64, 128, 129, 200, 300]) {
    const frame = mapper.fullMapMessages(self)![0].frame(true);
    assert.ok(splitZstdFrames(frame.subarray(4)).length >= 3, "several zstd frames");
    const viaSlices = normalized(decodeMessage(frame));
    const plain = normalized(JSON.parse(mapper.fullMapJson(self)!));
    assert.deepEqual(viaSlices, plain);
    assert.equal(viaSlices.Peers.length, ids.length - 1);
    assert.ok(!viaSlices.Peers.some((p) => p.ID === self), "self is never a peer");
    assert.deepEqual(viaSlices.UserProfiles.map((u) => u.ID), [1, 2, 3, 2147455555]);
  }
});

Deno.test("full map slices pick up node changes and membership changes", () => {
  const ids = Array.from({ length: 260 }, (_, i) => i + 1);
  const { nodes, mapper } = tailnet(ids);
  mapper.fullMapMessages(1)![0].frame(true); // warm every slice
  nodes.get(200)!.givenName = "renamed";
  mapper.invalidateNode(200);
  nodes.delete(150);
  mapper.membershipChanged(150);
  const m = decodeMessage(mapper.fullMapMessages(1)![0].frame(true));
  const byId = new Map(m.Peers!.map((p) => [p.ID, p]));
  assert.equal(byId.get(200)!.Name, "renamed.tailnet.internal.");
  assert.equal(byId.has(150), false);
  assert.equal(m.Peers!.length, 258);
});

Deno.test("a lone node gets an empty peer list, and PeersRemoved on resync", () => {
  const { mapper } = tailnet([5]);
  const m = decodeMessage(mapper.fullMapMessages(5)![0].frame(true));
  assert.deepEqual(m.Peers, []);
  assert.equal(m.Node!.ID, 5);
  const plain = JSON.parse(mapper.fullMapMessages(5, { resync: true })![0].json);
  assert.equal(plain.PeersRemoved, undefined, "nobody to remove");
});

Deno.test("a node's own capabilities are headscale's baseline: admin, SSH, Taildrop when enabled, the auto-update default either way", () => {
  const { nodes } = tailnet([1]);
  const state = {
    getNode: (id: number) => nodes.get(id),
    getUser: () => undefined,
    listNodes: () => [...nodes.values()],
    isOnline: () => true,
    primaryRoutesOf: () => [],
    capVersionOf: () => undefined,
  };
  const capMap = (text: string) =>
    new Mapper({
      state,
      config: parseConfigText(text, { env: {} }).config,
      derpMap: () => TEST_DERP_MAP,
    })
      .selfCapMap(1);
  assert.deepEqual(capMap(""), {
    "https://tailscale.com/cap/is-admin": [],
    "https://tailscale.com/cap/ssh": [],
    "https://tailscale.com/cap/file-sharing": [],
    "default-auto-update": [false],
  });
  assert.deepEqual(capMap("taildrop:\n  enabled: false\nauto_update:\n  enabled: true\n"), {
    "https://tailscale.com/cap/is-admin": [],
    "https://tailscale.com/cap/ssh": [],
    "default-auto-update": [true],
  });
});

/** A tailnet whose online states, last-seen times and capability versions the test moves. */
function volatileTailnet(ids: number[]) {
  const base = tailnet(ids);
  const online = new Set<number>(ids.filter((id) => id % 2 === 0));
  const caps = new Map<number, number>();
  const state = {
    ...base.state,
    isOnline: (id: number) => online.has(id),
    capVersionOf: (id: number) => caps.get(id),
  };
  const mapper = new Mapper({
    state,
    config,
    derpMap: () => TEST_DERP_MAP,
    now: () => new Date(0),
  });
  return { nodes: base.nodes, mapper, online, caps };
}

/** What a client holds after a full map and the messages after it (PeersChangedPatch only). */
function clientView(msgs: { frame(zstd: boolean): Uint8Array }[]): MapResponse {
  // The frames, as sent: a message's `json` is computed afresh, not read from its frame.
  const [map, ...rest] = msgs.map((m) => decodeMessage(m.frame(true)));
  const peers = new Map(map.Peers!.map((p) => [p.ID, { ...p }]));
  for (const m of rest) {
    assert.deepEqual(Object.keys(m), ["PeersChangedPatch"]);
    for (const pc of m.PeersChangedPatch!) {
      const p = peers.get(pc.NodeID)!;
      assert.ok(p, `a patch names a peer of the map (${pc.NodeID})`);
      if (pc.Online !== undefined) p.Online = pc.Online;
      if (pc.LastSeen !== undefined) p.LastSeen = pc.LastSeen;
      if (pc.Cap !== undefined) p.Cap = pc.Cap;
    }
  }
  return { ...map, Peers: [...peers.values()] };
}

/** Clients show LastSeen for offline peers only; an online peer's old value is not compared. */
function withoutOnlineLastSeen(m: MapResponse) {
  const n = normalized(m);
  return {
    ...n,
    Peers: n.Peers.map((p) => {
      if (!p.Online) return p;
      const { LastSeen: _, ...rest } = p;
      return rest;
    }),
  };
}

Deno.test("full map slices: online, last-seen and cap changes are patched after the map, not rebuilt", () => {
  const ids = Array.from({ length: 300 }, (_, i) => i + 1);
  fc.assert(
    fc.property(
      fc.array(
        fc.record({
          id: fc.constantFrom(...ids),
          what: fc.constantFrom("online", "offline", "cap"),
          cap: fc.integer({ min: 1, max: 200 }),
          // A full map in between: slices' cached patches must follow later changes.
          mapAfter: fc.boolean(),
        }),
        { maxLength: 60 },
      ),
      fc.constantFrom(1, 130, 300),
      (changes, self) => {
        const { nodes, mapper, online, caps } = volatileTailnet(ids);
        mapper.fullMapMessages(1); // warm every slice
        changes.forEach((c, k) => {
          let patch;
          if (c.what === "cap") {
            caps.set(c.id, c.cap);
            patch = { capVersion: c.cap };
          } else if (c.what === "online") {
            online.add(c.id);
            patch = { online: true };
          } else {
            online.delete(c.id);
            nodes.get(c.id)!.lastSeen = new Date(1_000 * (k + 1));
            patch = { online: false, lastSeen: nodes.get(c.id)!.lastSeen! };
          }
          mapper.apply([{ kind: "node-patched", nodeId: c.id, patch }]);
          if (c.mapAfter) check();
        });
        check();
        function check() {
          const msgs = mapper.fullMapMessages(self)!;
          assert.ok(msgs.length <= 2);
          const plain = JSON.parse(mapper.fullMapJson(self)!);
          assert.deepEqual(withoutOnlineLastSeen(clientView(msgs)), withoutOnlineLastSeen(plain));
        }
      },
    ),
    { numRuns: 60 },
  );
});

Deno.test("full map slices: one node coming online leaves its slice cached; many rebuild it", () => {
  const ids = Array.from({ length: 400 }, (_, i) => i + 1);
  const { mapper, online } = volatileTailnet(ids);
  const first = mapper.fullMapMessages(1)!;
  assert.equal(first.length, 1);
  online.add(201);
  mapper.apply([{ kind: "node-patched", nodeId: 201, patch: { online: true } }]);
  const after = mapper.fullMapMessages(1)!;
  assert.equal(after.length, 2, "the slice was kept: a patch follows the map");
  assert.deepEqual(decodeMessage(after[1].frame(true)), {
    PeersChangedPatch: [{ NodeID: 201, Online: true }],
  });
  // More than maxStale (8) in another slice (256-383): it is rebuilt, nothing there is patched.
  for (let id = 257; id <= 291; id += 2) {
    online.add(id);
    mapper.apply([{ kind: "node-patched", nodeId: id, patch: { online: true } }]);
  }
  const rebuilt = mapper.fullMapMessages(1)!;
  assert.equal(rebuilt.length, 2, "node 201's slice is still patched");
  const patched = decodeMessage(rebuilt[1].frame(true)).PeersChangedPatch!.map((
    p: { NodeID: number },
  ) => p.NodeID);
  assert.deepEqual(patched, [201]);
  // A one-shot map is current on its own.
  const fresh = mapper.fullMapMessages(1, { fresh: true })!;
  assert.equal(fresh.length, 1);
  assert.equal(
    JSON.parse(fresh[0].json).Peers.find((p: { ID: number }) => p.ID === 201).Online,
    true,
  );
});
