/**
 * Fixtures for mapper tests: a stored node with addresses derived from its id, and a session sink
 * that keeps what it was sent.
 */
import { randomKey } from "./control.ts";
import type { SharedMessage } from "../../lib/mapper/framing.ts";
import type { MapSink } from "../../lib/mapper/notifier.ts";
import type { NodeRecord, UserRecord } from "../../lib/store/types.ts";
import type { FilterRule, MapResponse } from "../../lib/tailcfg/types.ts";

/** Node `id` with fresh keys at 100.64.<id / 256>.<id % 256> and fd7a:115c:a1e0::<id in hex>. */
export function nodeRecord(id: number, extra: Partial<NodeRecord> = {}): NodeRecord {
  return {
    id,
    machineKey: randomKey("mkey:"),
    nodeKey: randomKey("nodekey:"),
    discoKey: randomKey("discokey:"),
    ipv4: `100.64.${id >> 8}.${id & 255}`,
    ipv6: `fd7a:115c:a1e0::${id.toString(16)}`,
    hostname: `n${id}`,
    givenName: `n${id}`,
    userId: null,
    tags: [],
    authKeyId: null,
    registerMethod: "authkey",
    ephemeral: false,
    hostinfo: { Hostname: `n${id}` },
    endpoints: [],
    approvedRoutes: [],
    expiry: null,
    lastSeen: null,
    createdAt: new Date(0),
    updatedAt: new Date(0),
    ...extra,
  };
}

/** A map session's sink that records every message and how it was closed. */
export class RecordingSink implements MapSink {
  readonly got: SharedMessage[] = [];
  closedWith: string | null = null;
  constructor(readonly nodeId: number) {}
  send(msg: SharedMessage) {
    this.got.push(msg);
  }
  close(reason: string) {
    this.closedWith = reason;
  }
  /** The responses sent since the last take, decoded. */
  take(): MapResponse[] {
    return this.got.splice(0).map((m) => JSON.parse(m.json));
  }
}

/**
 * The packet filter a client holds after these responses, as Tailscale's client computes it
 * (controlclient/map.go): PacketFilter is the chunk "base"; in PacketFilters, "*": null drops
 * every chunk first, null deletes one, a list replaces one; the filter is every chunk's rules,
 * in key order. `held` carries the chunks over from earlier responses.
 */
export function clientFilter(
  responses: readonly MapResponse[],
  held: Map<string, FilterRule[]> = new Map(),
): FilterRule[] {
  for (const r of responses) {
    if (r.PacketFilter) held.set("base", r.PacketFilter);
    const named = r.PacketFilters;
    if (!named) continue;
    if ("*" in named && named["*"] === null) held.clear();
    for (const [k, v] of Object.entries(named)) {
      if (k === "*") continue;
      if (v === null) held.delete(k);
      else held.set(k, v);
    }
  }
  return [...held.keys()].sort().flatMap((k) => held.get(k)!);
}

/**
 * A filter with each rule's sources spread over as many rules as it likes, put back together:
 * rules that match alike (same fields but SrcIPs) as one, sources sorted. Two filters that
 * normalise equal let the same packets through.
 */
export function normaliseFilter(rules: readonly FilterRule[]): FilterRule[] {
  const byRest = new Map<string, { rule: FilterRule; src: Set<string> }>();
  for (const r of rules) {
    const { SrcIPs, ...rest } = r;
    const key = JSON.stringify(rest);
    const entry = byRest.get(key) ?? { rule: { ...rest, SrcIPs: [] }, src: new Set<string>() };
    for (const s of SrcIPs) entry.src.add(s);
    byRest.set(key, entry);
  }
  return [...byRest.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map((
    [, e],
  ) => ({ ...e.rule, SrcIPs: [...e.src].sort() }));
}

/** A user named `u<id>`, as the mapper reads users. */
export function testUser(id: number): UserRecord {
  return {
    id,
    name: `u${id}`,
    displayName: "",
    email: "",
    providerId: "",
    provider: "",
    profilePicUrl: "",
    createdAt: new Date(0),
  };
}

/** What the mapper and notifier read of the state, over these nodes: all online, no routes. */
export function mapStateOver(nodes: ReadonlyMap<number, NodeRecord>) {
  return {
    getNode: (id: number) => nodes.get(id),
    getUser: testUser,
    listNodes: () => [...nodes.values()],
    isOnline: () => true,
    primaryRoutesOf: () => [],
    capVersionOf: () => undefined,
  };
}
