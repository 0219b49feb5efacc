/**
 * Deletes ephemeral nodes that stayed offline for node.ephemeral.inactivity_timeout. One timer
 * per offline ephemeral node, cancelled when it reconnects.
 */
import type { Logger } from "../log/log.ts";
import type { NodeRecord } from "../store/types.ts";

export interface EphemeralGcDeps {
  state: {
    getNode(id: number): NodeRecord | undefined;
    listNodes(): NodeRecord[];
    isOnline(id: number): boolean;
    deleteNode(id: number): Promise<unknown>;
  };
  timeoutMs: number;
  log: Logger;
}

export class EphemeralGc {
  private readonly timers = new Map<number, ReturnType<typeof setTimeout>>();
  private closed = false;

  constructor(private readonly deps: EphemeralGcDeps) {}

  /** Schedules every offline ephemeral node (at startup nobody is online yet). */
  start(): void {
    for (const n of this.deps.state.listNodes()) {
      if (n.ephemeral && !this.deps.state.isOnline(n.id)) this.schedule(n.id);
    }
  }

  get scheduledCount(): number {
    return this.timers.size;
  }

  /** The node went offline: delete it unless it comes back in time. */
  schedule(nodeId: number): void {
    if (this.closed) return;
    const node = this.deps.state.getNode(nodeId);
    if (!node?.ephemeral) return;
    this.cancel(nodeId);
    this.timers.set(nodeId, setTimeout(() => this.expire(nodeId), this.deps.timeoutMs));
  }

  cancel(nodeId: number): void {
    const t = this.timers.get(nodeId);
    if (t !== undefined) clearTimeout(t);
    this.timers.delete(nodeId);
  }

  private expire(nodeId: number): void {
    this.timers.delete(nodeId);
    const { state, log } = this.deps;
    const node = state.getNode(nodeId);
    if (!node?.ephemeral || state.isOnline(nodeId)) return;
    state.deleteNode(nodeId).then(
      () => log.info("deleted inactive ephemeral node", { node: nodeId, name: node.givenName }),
      (e) => log.error("deleting ephemeral node failed", { node: nodeId, error: e }),
    );
  }

  close(): void {
    this.closed = true;
    for (const t of this.timers.values()) clearTimeout(t);
    this.timers.clear();
  }
}
