/**
 * What the mapper asks the policy: who sees whom, each node's inbound packet filter and SSH
 * policy. The policy engine implements this; until it is plugged in, `allowAllPolicy` lets every
 * node see and reach every other node.
 *
 * Contract for implementations:
 * - Visibility is symmetric: `peersOf(a)` holds b exactly when `peersOf(b)` holds a, so the same
 *   call answers "whose map contains X" when X changes. `peersOf` never yields the node itself.
 * - Results are stable until the policy announces `{ kind: "policy-changed" }` on the state
 *   (State.announce), after which every session receives what changed for it. A node change
 *   that alters relationships (tags, addresses) must be followed by that announcement, or by
 *   `Notifier.resync(ids)` naming the nodes whose outputs may have changed.
 * - Whether a sees b depends only on a, b and the policy: after a node change the notifier
 *   compares peers only for the changed nodes.
 */
import type { CapMap, FilterRule, SSHPolicy } from "../tailcfg/types.ts";

export interface PolicyView {
  /** Nodes whose maps contain `nodeId` (= the nodes `nodeId` sees). Sorted ascending is cheapest. */
  peersOf(nodeId: number): Iterable<number>;
  canSee(a: number, b: number): boolean;
  /** Inbound rules for the node; `[]` denies all inbound traffic. */
  filterFor(nodeId: number): FilterRule[];
  /** The node's SSH policy, or null for none (then no SSH capability is granted). */
  sshPolicyFor(nodeId: number): SSHPolicy | null;
  /**
   * Tailscale SSH check mode: the check period (ms, 0 = every session) of the first check rule
   * letting `src` in to `dst`, or null when none does. Optional (no policy: no check rules).
   */
  sshCheckPeriodMs?(src: number, dst: number): number | null;
  /**
   * Whether the policy's tagOwners let `user` tag their own device with `tag` (a registration
   * with `tailscale up --advertise-tags`). Optional; absent (no policy) means no.
   */
  mayOwnTag?(user: { id: number; name: string; email?: string }, tag: string): boolean;
  /** Extra self capabilities (policy nodeAttrs); optional. */
  nodeCapMap?(nodeId: number): CapMap | null;
  /**
   * True when every node sees every other node (no policy, or an allow-all one). Optional; lets
   * the notifier fan a change out per group of sessions instead of per session.
   */
  seesEveryone?(): boolean;
}

/** Every port of every node, from everyone: what headscale does without a policy. */
export const ALLOW_ALL_FILTER: FilterRule[] = [
  { SrcIPs: ["*"], DstPorts: [{ IP: "*", Ports: { First: 0, Last: 65535 } }] },
];

/** Everyone sees everyone. `nodeIds` lists all nodes in ascending order. */
export function allowAllPolicy(nodeIds: () => readonly number[]): PolicyView {
  return {
    *peersOf(nodeId) {
      for (const id of nodeIds()) if (id !== nodeId) yield id;
    },
    canSee: () => true,
    filterFor: () => ALLOW_ALL_FILTER,
    sshPolicyFor: () => null,
    seesEveryone: () => true,
  };
}
