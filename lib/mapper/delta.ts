/**
 * Assembles one delta MapResponse from the items a session gets, what goes to everyone, and
 * what is its own (its Node, DNSConfig, policy outputs). Field order is the wire order clients
 * have always seen.
 */
import { type Json, jsonArray, jsonObject, toJson } from "../tailcfg/json.ts";
import type {
  DERPMap,
  DNSConfig,
  MapResponse,
  Node,
  PeerChange,
  UserProfile,
} from "../tailcfg/types.ts";
import type { Mapper } from "./mapper.ts";
import type { PolicyDelta } from "./policy_sync.ts";

/** One piece of a batch: a full node, a PeerChange, or a renamed user's profile. */
export type Item =
  /** A full node; `user` is its wire user id (for UserProfiles). */
  | { kind: "full"; json: Json<Node>; nodeId: number; user: number | null }
  | { kind: "patch"; json: Json<PeerChange>; nodeId: number; user: null }
  /** A renamed user's profile (nodeId -1). */
  | { kind: "profile"; json: Json<UserProfile>; nodeId: -1; user: number };

/** What every session gets in this batch. */
export interface Everyone {
  removed: readonly number[];
  derpJson: Json<DERPMap> | null;
}

export interface OwnParts {
  selfJson: Json<Node> | null;
  dnsJson: Json<DNSConfig> | null;
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
    added.length === 0 && removed.length === 0 && d.filtersJson === null && d.sshJson === null &&
    !d.selfChanged
  ) return null;
  if (added.length === d.added.length && removed.length === d.removed.length) return d;
  return { ...d, added, removed };
}

/** The delta MapResponse; members in the order clients have always seen them. */
export function deltaJson(
  mapper: Mapper,
  list: readonly Item[],
  everyone: Everyone,
  extra: OwnParts,
): Json<MapResponse> {
  const policy = extra.policy;
  // Peers the policy no longer shows this node: no full node or patch about them may follow
  // (a client stops applying a delta at a patch for a node that is not its peer).
  const gone = policy && policy.removed.length > 0 ? new Set(policy.removed) : null;
  const changed: Item[] = [];
  const patches: Json<PeerChange>[] = [];
  const profiles = new Set<Json<UserProfile>>();
  for (const i of list) {
    if (i.kind === "profile") profiles.add(i.json);
    else if (gone?.has(i.nodeId)) continue;
    else if (i.kind === "full") changed.push(i);
    else patches.push(i.json);
  }
  const users = new Set<number>();
  for (const i of changed) if (i.user !== null) users.add(i.user);
  const changedJson = changed.map((i) => i.json as Json<Node>);
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
  const removed = gone ? [...new Set([...everyone.removed, ...gone])] : everyone.removed;
  for (const u of users) {
    const p = mapper.profileJsonOf(u);
    if (p !== null) profiles.add(p);
  }
  return jsonObject<MapResponse>({
    Node: extra.selfJson ?? undefined,
    PeersChanged: changedJson.length > 0 ? jsonArray(changedJson) : undefined,
    PeersChangedPatch: patches.length > 0 ? jsonArray(patches) : undefined,
    PeersRemoved: removed.length > 0 ? toJson(removed as number[]) : undefined,
    DERPMap: everyone.derpJson ?? undefined,
    DNSConfig: extra.dnsJson ?? undefined,
    // Only the filter chunks that changed (lib/mapper/filter_chunks.ts).
    PacketFilters: policy?.filtersJson ?? undefined,
    SSHPolicy: policy?.sshJson ?? undefined,
    UserProfiles: profiles.size > 0 ? jsonArray([...profiles]) : undefined,
  });
}
