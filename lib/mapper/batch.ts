/**
 * What a batching window collected, per kind of wire change: State events (and the nodes the
 * policy says are affected) go in; the notifier turns one Batch into deltas when the window
 * closes. Pure bookkeeping: no wire JSON, no sessions.
 */
import {
  type Change,
  isStatusPatch,
  mergePatch,
  type NodePatch,
  patchable,
} from "../state/events.ts";

export interface Batch {
  /** Nodes peers need in full (PeersChanged). */
  full: Set<number>;
  /** PeerChanges, merged per node. */
  patches: Map<number, NodePatch>;
  removed: Set<number>;
  /** Nodes that must get their own Node again (key, expiry, or anything a full update covers). */
  self: Set<number>;
  users: Set<number>;
  derp: boolean;
  dns: boolean;
  /** The policy changed: compare every session's policy outputs. */
  policy: boolean;
  /** Sessions whose policy outputs may have changed (compared, then sent what changed). */
  resync: Set<number>;
  /** Something besides status patches (isStatusPatch): it goes out at the normal pace. */
  urgent: boolean;
}

export function emptyBatch(): Batch {
  return {
    full: new Set(),
    patches: new Map(),
    removed: new Set(),
    self: new Set(),
    users: new Set(),
    derp: false,
    dns: false,
    policy: false,
    resync: new Set(),
    urgent: false,
  };
}

function addPatch(b: Batch, id: number, patch: NodePatch): void {
  const prev = b.patches.get(id);
  b.patches.set(id, prev ? mergePatch(prev, patch) : { ...patch });
}

/** Records what each change means for the wire. */
export function addChanges(b: Batch, changes: readonly Change[]): void {
  for (const c of changes) {
    if (c.kind !== "node-patched" || !isStatusPatch(c.patch)) b.urgent = true;
    switch (c.kind) {
      case "node-added":
      case "node-updated":
        b.full.add(c.nodeId);
        if (c.kind === "node-added" || !c.peersOnly) b.self.add(c.nodeId);
        break;
      case "node-expired":
        b.full.add(c.nodeId);
        b.self.add(c.nodeId);
        break;
      case "node-patched": {
        const p = c.patch;
        if (patchable(p)) addPatch(b, c.nodeId, p);
        else b.full.add(c.nodeId);
        if (p.nodeKey !== undefined || p.keyExpiry !== undefined) b.self.add(c.nodeId);
        break;
      }
      case "primary-routes-changed":
        // New AllowedIPs need the full node (a node removed meanwhile is dropped at send time).
        if (!b.removed.has(c.nodeId)) b.full.add(c.nodeId);
        break;
      case "node-removed":
        b.removed.add(c.nodeId);
        break;
      case "user-updated":
        b.users.add(c.userId);
        break;
      case "policy-changed":
        b.policy = true;
        break;
      case "derp-map-changed":
        b.derp = true;
        break;
      case "dns-changed":
        b.dns = true;
        break;
    }
  }
}
