/**
 * A node as peers see it (tailcfg.Node). Nothing here depends on the receiving node, so the JSON
 * can be built once per change and shared by every map that lists the node.
 */
import type { NodeRecord } from "../store/types.ts";
import type { Hostinfo, Node } from "../tailcfg/types.ts";
import { nodeFqdn } from "../dns/dns_config.ts";
import { isExitRoute, servedRoutes } from "../state/routes.ts";
import { wireUserId } from "./users.ts";

export interface NodeViewContext {
  baseDomain: string;
  now: Date;
  online: boolean;
  /** The node's capability version from its last map request, if known. */
  capVer?: number;
  /** The node's primary (non-exit) routes. */
  primaryRoutes: readonly string[];
}

export function nodeAddresses(node: NodeRecord): string[] {
  const out: string[] = [];
  if (node.ipv4) out.push(`${node.ipv4}/32`);
  if (node.ipv6) out.push(`${node.ipv6}/128`);
  return out;
}

export function homeDerpOf(hostinfo: Hostinfo | Record<string, unknown> | null): number {
  const netInfo = hostinfo?.NetInfo as Record<string, unknown> | undefined;
  const region = netInfo?.PreferredDERP;
  return typeof region === "number" && Number.isSafeInteger(region) && region > 0 ? region : 0;
}

export function isExpired(node: NodeRecord, now: Date): boolean {
  return node.expiry !== null && node.expiry.getTime() <= now.getTime();
}

export function peerNode(node: NodeRecord, ctx: NodeViewContext): Node {
  const addresses = nodeAddresses(node);
  const exitRoutes = servedRoutes(node).filter(isExitRoute);
  const out: Node = {
    ID: node.id,
    StableID: String(node.id),
    Name: nodeFqdn(node.givenName, ctx.baseDomain),
    User: wireUserId(node),
    Key: node.nodeKey,
    // No Machine key for peers (headscale sends it): Tailscale clients only compare it between
    // netmaps, and it is a quarter of a peer's compressed bytes in every full map. The node's own
    // entry has it (mapper.selfNode).
    Addresses: addresses,
    AllowedIPs: [...addresses, ...ctx.primaryRoutes, ...exitRoutes],
    Hostinfo: (node.hostinfo ?? { Hostname: node.hostname }) as Hostinfo,
    Created: node.createdAt.toISOString(),
    MachineAuthorized: true,
    Online: ctx.online,
  };
  if (node.expiry) out.KeyExpiry = node.expiry.toISOString();
  if (node.discoKey) out.DiscoKey = node.discoKey;
  if (node.endpoints.length > 0) out.Endpoints = node.endpoints;
  const derp = homeDerpOf(node.hostinfo);
  if (derp > 0) out.HomeDERP = derp;
  if (ctx.capVer) out.Cap = ctx.capVer;
  if (node.tags.length > 0) out.Tags = node.tags;
  if (ctx.primaryRoutes.length > 0) out.PrimaryRoutes = [...ctx.primaryRoutes];
  if (!ctx.online && node.lastSeen) out.LastSeen = node.lastSeen.toISOString();
  if (isExpired(node, ctx.now)) out.Expired = true;
  return out;
}
