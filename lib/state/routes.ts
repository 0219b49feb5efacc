/**
 * Subnet routes: a node serves a route when an admin approved it and the node announces it
 * (Hostinfo.RoutableIPs). When several online nodes serve the same prefix, one is primary and
 * only it carries the prefix in AllowedIPs; the primary stays until it goes offline, stops
 * serving or is found unhealthy (no flapping), then the lowest healthy online node id takes over.
 * Health comes from the HA prober (../control/ha_prober.ts): a router that does not answer a
 * ping is unhealthy until it answers or reconnects; a recovered router does not take its routes
 * back. When every candidate is unhealthy the primary stays if it is still online, else the
 * prefix has none (as headscale v0.29: better unmapped than pointed at a dead router). Exit
 * routes (0.0.0.0/0, ::/0) have no primary: every exit node carries them.
 */
import type { NodeRecord } from "../store/types.ts";
import { formatPrefix, parsePrefix } from "../net/ip.ts";

function canonical(route: string): string | null {
  const p = parsePrefix(route);
  return p && route.includes("/") ? formatPrefix(p) : null;
}

export function isExitRoute(route: string): boolean {
  return route === "0.0.0.0/0" || route === "::/0";
}

/** The routes the node announces (Hostinfo.RoutableIPs), as it sent them. */
export function advertisedRoutes(n: NodeRecord): string[] {
  const routes = n.hostinfo?.RoutableIPs;
  return Array.isArray(routes) ? routes.filter((r): r is string => typeof r === "string") : [];
}

/** Approved ∩ announced routes of the node, canonical and sorted. */
export function servedRoutes(node: NodeRecord): string[] {
  if (node.approvedRoutes.length === 0) return [];
  const announced = node.hostinfo?.RoutableIPs;
  if (!Array.isArray(announced)) return [];
  const ann = new Set(announced.map((r) => typeof r === "string" ? canonical(r) : null));
  const out = new Set<string>();
  for (const r of node.approvedRoutes) {
    const c = canonical(r);
    if (c && ann.has(c)) out.add(c);
  }
  return [...out].sort();
}

export interface RouteSource {
  getNode(id: number): NodeRecord | undefined;
  isOnline(id: number): boolean;
}

export class PrimaryRoutes {
  /** Nodes that serve at least one non-exit route, online or not. */
  private readonly routers = new Map<number, string[]>();
  /** Routers the HA prober found not answering (cleared when they answer or reconnect). */
  private readonly unhealthy = new Set<number>();
  private primaryOf = new Map<string, number>();
  private byNode = new Map<number, string[]>();

  constructor(private readonly source: RouteSource) {}

  /** Primary (non-exit) routes of the node, sorted. */
  primaryRoutesOf(nodeId: number): readonly string[] {
    return this.byNode.get(nodeId) ?? [];
  }

  /**
   * Re-reads the given nodes and re-elects primaries when a router was involved. Returns the
   * nodes whose primary routes changed (their AllowedIPs changed).
   */
  update(changed: Iterable<number>): number[] {
    let touched = false;
    for (const id of changed) {
      const node = this.source.getNode(id);
      const routes = node ? servedRoutes(node).filter((r) => !isExitRoute(r)) : [];
      if (routes.length > 0) {
        this.routers.set(id, routes);
        touched = true;
      } else if (this.routers.delete(id)) {
        this.unhealthy.delete(id);
        touched = true;
      }
    }
    return touched ? this.elect() : [];
  }

  /** Online routers that share a prefix with another online router, ascending: the HA set. */
  haRouters(): number[] {
    const out = new Set<number>();
    for (const ids of this.candidates().values()) {
      if (ids.length >= 2) { for (const id of ids) out.add(id); }
    }
    return [...out].sort((a, b) => a - b);
  }

  isHealthy(id: number): boolean {
    return !this.unhealthy.has(id);
  }

  /**
   * Applies probe results (true: answered) and re-elects once for all of them. An unhealthy
   * mark sticks only on an online router. Returns the nodes whose primary routes changed.
   */
  setHealth(results: ReadonlyMap<number, boolean>): number[] {
    let touched = false;
    for (const [id, healthy] of results) {
      if (healthy) {
        touched = this.unhealthy.delete(id) || touched;
      } else if (this.routers.has(id) && this.source.isOnline(id) && !this.unhealthy.has(id)) {
        this.unhealthy.add(id);
        touched = true;
      }
    }
    return touched ? this.elect() : [];
  }

  /** Forgets a node's health mark (it reconnected, went offline or stopped routing). */
  clearHealth(id: number): void {
    this.unhealthy.delete(id);
  }

  /** Online routers per prefix, ascending ids. */
  private candidates(): Map<string, number[]> {
    const candidates = new Map<string, number[]>();
    for (const [id, routes] of this.routers) {
      if (!this.source.isOnline(id)) continue;
      for (const r of routes) {
        const list = candidates.get(r);
        if (list) list.push(id);
        else candidates.set(r, [id]);
      }
    }
    for (const ids of candidates.values()) ids.sort((a, b) => a - b);
    return candidates;
  }

  private elect(): number[] {
    const primaryOf = new Map<string, number>();
    for (const [route, ids] of this.candidates()) {
      const current = this.primaryOf.get(route);
      const stays = current !== undefined && ids.includes(current);
      const healthy = ids.find((id) => !this.unhealthy.has(id));
      if (stays && !this.unhealthy.has(current)) primaryOf.set(route, current);
      else if (healthy !== undefined) primaryOf.set(route, healthy);
      else if (stays) primaryOf.set(route, current);
    }
    const byNode = new Map<number, string[]>();
    for (const [route, id] of primaryOf) {
      const list = byNode.get(id);
      if (list) list.push(route);
      else byNode.set(id, [route]);
    }
    for (const list of byNode.values()) list.sort();
    const changed: number[] = [];
    for (const id of new Set([...this.byNode.keys(), ...byNode.keys()])) {
      const before = this.byNode.get(id) ?? [];
      const after = byNode.get(id) ?? [];
      if (before.length !== after.length || before.some((r, i) => r !== after[i])) {
        changed.push(id);
      }
    }
    this.primaryOf = primaryOf;
    this.byNode = byNode;
    return changed;
  }
}
