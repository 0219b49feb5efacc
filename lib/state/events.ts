/**
 * Typed change events: what the state layer tells the mapper after a change is durable. Each
 * event names the nodes it concerns, so fan-out costs work proportional to the affected peers.
 */

/** Small per-node changes a peer can apply without a full node (tailcfg.PeerChange). */
export interface NodePatch {
  endpoints?: string[];
  homeDerp?: number;
  discoKey?: string;
  nodeKey?: string;
  online?: boolean;
  lastSeen?: Date;
  /** null = key no longer expires. */
  keyExpiry?: Date | null;
}

export type Change =
  /** A node joined the tailnet. */
  | { kind: "node-added"; nodeId: number }
  /** Something peers need a full node for changed (name, tags, addresses, routes, hostinfo…). */
  | { kind: "node-updated"; nodeId: number }
  /** Only fields a PeerChange can carry changed. */
  | { kind: "node-patched"; nodeId: number; patch: NodePatch }
  /** A node left the tailnet (deleted, or an ephemeral node timed out). */
  | { kind: "node-removed"; nodeId: number }
  /** A user's profile (name, display name) changed. */
  | { kind: "user-updated"; userId: number }
  | { kind: "policy-changed" }
  | { kind: "derp-map-changed" }
  | { kind: "dns-changed" };

export type ChangeListener = (changes: readonly Change[]) => void;
