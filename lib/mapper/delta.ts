/**
 * Assembles one delta MapResponse from the items a session gets, what goes to everyone, and
 * what is its own (its Node, DNSConfig, policy outputs). Field order is the wire order clients
 * have always seen.
 */
import type { Mapper } from "./mapper.ts";
import type { PolicyDelta } from "./policy_sync.ts";

/** One piece of a batch: a full node, a PeerChange, or a renamed user's profile. */
export interface Item {
  json: string;
  /** The node a full node or patch is about (-1 for a profile). */
  nodeId: number;
  kind: "full" | "patch" | "profile";
  /** Wire user id of a full node (for UserProfiles). */
  user: number | null;
}

/** What every session gets in this batch. */
export interface Everyone {
  removed: readonly number[];
  derpJson: string | null;
}

export interface OwnParts {
  selfJson: string | null;
  dnsJson: string | null;
  policy: PolicyDelta | null;
}

/**
 * The policy delta minus what the session's shared message already carries (full nodes of
 * changed peers, removals sent to everyone): often nothing is left, and the session keeps
 * sharing its group's message.
 */
export function withoutShared(
  d: PolicyDelta,
  shared: ReadonlySet<number>,
  removedForAll: ReadonlySet<number>,
): PolicyDelta | null {
  const added = d.added.filter((id) => !shared.has(id));
  const removed = d.removed.filter((id) => !removedForAll.has(id));
  if (
    added.length === 0 && removed.length === 0 && d.filterJson === null && d.sshJson === null &&
    !d.selfChanged
  ) return null;
  if (added.length === d.added.length && removed.length === d.removed.length) return d;
  return { ...d, added, removed };
}

export function deltaJson(
  mapper: Mapper,
  list: readonly Item[],
  everyone: Everyone,
  extra: OwnParts,
): string {
  const policy = extra.policy;
  // Peers the policy no longer shows this node: no full node or patch about them may follow
  // (a client stops applying a delta at a patch for a node that is not its peer).
  const gone = policy && policy.removed.length > 0 ? new Set(policy.removed) : null;
  const parts: string[] = [];
  if (extra.selfJson !== null) parts.push(`"Node":${extra.selfJson}`);
  const changed = list.filter((i) => i.kind === "full" && !gone?.has(i.nodeId));
  const patches = list.filter((i) => i.kind === "patch" && !gone?.has(i.nodeId));
  const users = new Set<number>();
  for (const i of changed) if (i.user !== null) users.add(i.user);
  const changedJson = changed.map((i) => i.json);
  if (policy && policy.added.length > 0) {
    const listed = new Set(changed.map((i) => i.nodeId));
    for (const id of policy.added) {
      if (listed.has(id)) continue;
      const entry = mapper.peerEntry(id);
      if (entry === null) continue;
      changedJson.push(entry.json);
      users.add(entry.user);
    }
  }
  if (changedJson.length > 0) parts.push(`"PeersChanged":[${changedJson.join(",")}]`);
  if (patches.length > 0) {
    parts.push(`"PeersChangedPatch":[${patches.map((i) => i.json).join(",")}]`);
  }
  const removed = gone ? [...new Set([...everyone.removed, ...gone])] : everyone.removed;
  if (removed.length > 0) parts.push(`"PeersRemoved":[${removed.join(",")}]`);
  if (everyone.derpJson !== null) parts.push(`"DERPMap":${everyone.derpJson}`);
  if (extra.dnsJson !== null) parts.push(`"DNSConfig":${extra.dnsJson}`);
  // Named filter "base" is what PacketFilter sets, and what full maps use.
  if (policy?.filterJson) parts.push(`"PacketFilters":{"base":${policy.filterJson}}`);
  if (policy?.sshJson) parts.push(`"SSHPolicy":${policy.sshJson}`);
  const profiles = new Set(list.filter((i) => i.kind === "profile").map((i) => i.json));
  for (const u of users) {
    const p = mapper.profileJsonOf(u);
    if (p !== null) profiles.add(p);
  }
  if (profiles.size > 0) parts.push(`"UserProfiles":[${[...profiles].join(",")}]`);
  return `{${parts.join(",")}}`;
}
