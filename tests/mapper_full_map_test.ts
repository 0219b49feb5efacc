import assert from "node:assert/strict";
import { parseConfigText } from "../lib/config/load.ts";
import { randomKey, TEST_DERP_MAP } from "./helpers/control.ts";
import { decodeFrames, splitZstdFrames } from "../lib/mapper/framing.ts";
import { Mapper } from "../lib/mapper/mapper.ts";
import type { NodeRecord, UserRecord } from "../lib/store/types.ts";
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
  const user = (id: number): UserRecord => ({
    id,
    name: `user${id}`,
    displayName: "",
    email: "",
    providerId: "",
    provider: "",
    profilePicUrl: "",
    createdAt: new Date(0),
  });
  const state = {
    getNode: (id: number) => nodes.get(id),
    getUser: (id: number) => id <= 3 ? user(id) : undefined,
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
  return { nodes, mapper };
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
  // 128 per slice: node 128 is alone in its slice, 300 ends a short one.
  const ids = [...Array.from({ length: 129 }, (_, i) => i + 1), 200, 300];
  const { mapper } = tailnet(ids);
  for (const self of [1, 64, 128, 129, 300]) {
    const frame = mapper.fullMapMessage(self)!.frame(true);
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
  mapper.fullMapMessage(1)!.frame(true); // warm every slice
  nodes.get(200)!.givenName = "renamed";
  mapper.invalidateNode(200);
  nodes.delete(150);
  mapper.membershipChanged(150);
  const m = decodeMessage(mapper.fullMapMessage(1)!.frame(true));
  const byId = new Map(m.Peers!.map((p) => [p.ID, p]));
  assert.equal(byId.get(200)!.Name, "renamed.tailnet.internal.");
  assert.equal(byId.has(150), false);
  assert.equal(m.Peers!.length, 258);
});

Deno.test("a lone node gets an empty peer list, and PeersRemoved on resync", () => {
  const { mapper } = tailnet([5]);
  const m = decodeMessage(mapper.fullMapMessage(5)!.frame(true));
  assert.deepEqual(m.Peers, []);
  assert.equal(m.Node!.ID, 5);
  const plain = JSON.parse(mapper.fullMapMessage(5, { resync: true })!.json);
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
