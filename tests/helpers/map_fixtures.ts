/**
 * Fixtures for mapper tests: a stored node with addresses derived from its id, and a session sink
 * that keeps what it was sent.
 */
import { randomKey } from "./control.ts";
import type { SharedMessage } from "../../lib/mapper/framing.ts";
import type { MapSink } from "../../lib/mapper/notifier.ts";
import type { NodeRecord } from "../../lib/store/types.ts";
import type { MapResponse } from "../../lib/tailcfg/types.ts";

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
