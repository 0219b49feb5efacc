/**
 * Every change to the tailnet, as State announces it after the change is durable (or, for what
 * only lives in memory, after it happened). This file is the one list: a new kind of change is
 * added here first, then handled by the mapper (caches, `Mapper.apply`), the policy
 * (`PolicyManager.apply`) and the notifier (`Notifier.apply`). Each event names the nodes it
 * concerns, so fan-out costs work proportional to the affected peers.
 */
import type { NodeRecord } from "../store/types.ts";

/**
 * Small per-node changes peers can apply without the full node: exactly what a
 * tailcfg.PeerChange carries. To add a field: add it here and to PATCH_FIELDS (its PeerChange
 * name), and have State put it in a patch (applyReport for what a map request reports); the
 * mapper's peerChangeJson writes every field PATCH_FIELDS lists. The full node (node_view.ts)
 * shows it too.
 */
export interface NodePatch {
  endpoints?: string[];
  /** 0 cannot be sent as a patch (PeerChange's zero means "unchanged"). */
  homeDerp?: number;
  discoKey?: string;
  nodeKey?: string;
  online?: boolean;
  lastSeen?: Date;
  /** null = key no longer expires, which a PeerChange cannot say. */
  keyExpiry?: Date | null;
  /** The node's capability version (tailcfg.CapabilityVersion) from its map request. */
  capVersion?: number;
}

/**
 * The NodePatch fields and their tailcfg.PeerChange names, in the order they are written.
 * Unset, empty-string, zero and null values are left out (PeerChange's zero means "unchanged").
 */
export const PATCH_FIELDS: ReadonlyArray<readonly [keyof NodePatch, string]> = [
  ["homeDerp", "DERPRegion"],
  ["capVersion", "Cap"],
  ["endpoints", "Endpoints"],
  ["nodeKey", "Key"],
  ["discoKey", "DiscoKey"],
  ["online", "Online"],
  ["lastSeen", "LastSeen"],
  ["keyExpiry", "KeyExpiry"],
];

/** True when a PeerChange can express the patch; otherwise peers need the full node. */
export function patchable(p: NodePatch): boolean {
  return p.keyExpiry !== null && p.homeDerp !== 0;
}

/**
 * True when the patch only says how the node is doing — online, last seen, its capability
 * version — and nothing a peer needs to reach it: full maps may show such values stale for a
 * moment (mapper.ts), and under load they wait longer to go out (notifier.ts).
 */
export function isStatusPatch(p: NodePatch): boolean {
  for (const [k, v] of Object.entries(p)) {
    if (v !== undefined && k !== "online" && k !== "lastSeen" && k !== "capVersion") return false;
  }
  return true;
}

/** Merges a later patch into an earlier one (later values win). */
export function mergePatch(into: NodePatch, later: NodePatch): NodePatch {
  for (const [k, v] of Object.entries(later)) {
    if (v !== undefined) (into as Record<string, unknown>)[k] = v;
  }
  return into;
}

export type Change =
  /** A node joined the tailnet. */
  | { kind: "node-added"; nodeId: number }
  /**
   * Something peers need a full node for changed (name, tags, addresses, routes, hostinfo…).
   * The node gets its own Node again too, unless `peersOnly` (nothing of its own view changed).
   */
  | { kind: "node-updated"; nodeId: number; peersOnly?: boolean }
  /** Only fields a PeerChange can carry changed (see patchable). */
  | { kind: "node-patched"; nodeId: number; patch: NodePatch }
  /** The node's key expiry was reached: peers see it Expired, the node learns its key is dead. */
  | { kind: "node-expired"; nodeId: number }
  /** The node became or stopped being primary for a subnet route (its AllowedIPs changed). */
  | { kind: "primary-routes-changed"; nodeId: number }
  /** A node left the tailnet (deleted, or an ephemeral node timed out); `node` is its last record. */
  | { kind: "node-removed"; nodeId: number; node?: NodeRecord }
  /** A user's profile (name, display name) changed. */
  | { kind: "user-updated"; userId: number }
  | { kind: "policy-changed" }
  | { kind: "derp-map-changed" }
  | { kind: "dns-changed" };

export type ChangeListener = (changes: readonly Change[]) => void;

/** The change for a node whose patchable fields changed: a patch if it can be one. */
export function nodeChange(nodeId: number, patch: NodePatch): Change {
  if (patchable(patch)) return { kind: "node-patched", nodeId, patch };
  // A new key or expiry is part of the node's own view; a lost home DERP is not.
  const own = patch.nodeKey !== undefined || patch.keyExpiry !== undefined;
  return { kind: "node-updated", nodeId, peersOnly: !own };
}
