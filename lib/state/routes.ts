/**
 * Subnet routes: a node serves a route when an admin approved it and the node announces it
 * (Hostinfo.RoutableIPs). When several online nodes serve the same prefix, one is primary and
 * only it carries the prefix in AllowedIPs; the primary stays until it goes offline or stops
 * serving (no flapping), then the lowest online node id takes over. Exit routes (0.0.0.0/0,
 * ::/0) have no primary: every exit node carries them.
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
        touched = true;
      }
    }
    return touched ? this.elect() : [];
  }

  private elect(): number[] {
    const candidates = new Map<string, number[]>();
    for (const [id, routes] of this.routers) {
      if (!this.source.isOnline(id)) continue;
      for (const r of routes) {
        const list = candidates.get(r);
        if (list) list.push(id);
        else candidates.set(r, [id]);
      }
    }
    const primaryOf = new Map<string, number>();
    for (const [route, ids] of candidates) {
      const current = this.primaryOf.get(route);
      primaryOf.set(
        route,
        current !== undefined && ids.includes(current) ? current : Math.min(...ids),
      );
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
