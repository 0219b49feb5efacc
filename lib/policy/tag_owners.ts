/**
 * Who may apply a tag to their own device (`tailscale up --advertise-tags`): the policy's
 * tagOwners, flattened once per policy and user list so one question is a few set lookups.
 *
 * Owners are users ("alice@", "alice@example.com"), groups (their members), other tags (the
 * owners of that tag, as headscale flattens them; a cycle adds nothing), autogroup:member (every
 * user) and the role autogroups (autogroup:admin, …: users with that role). A tag missing from
 * tagOwners, like every tag without a policy, is nobody's.
 */

import type { UserIndex } from "./compile.ts";
import type { Policy, PolicyUser } from "./types.ts";

interface Owners {
  /** Users the tokens resolve to today. */
  userIds: Set<number>;
  /** User tokens (groups expanded), for users the index has not seen yet. */
  tokens: string[];
  roles: Set<string>;
  anyMember: boolean;
}

export class TagOwnership {
  private readonly byTag = new Map<string, Owners>();
  private readonly knownIds: Set<number>;

  constructor(policy: Policy, private readonly users: UserIndex) {
    this.knownIds = new Set(users.users.map((u) => u.id));
    for (const tag of policy.tagOwners.keys()) {
      const owners: Owners = { userIds: new Set(), tokens: [], roles: new Set(), anyMember: false };
      collect(policy, tag, new Set(), owners);
      for (const token of owners.tokens) {
        const u = users.resolve(token);
        if (u) owners.userIds.add(u.id);
      }
      for (const role of owners.roles) {
        for (const u of users.withRole(role)) owners.userIds.add(u.id);
      }
      this.byTag.set(tag, owners);
    }
  }

  /** True when `tag` is in tagOwners and `user` is among its owners. */
  mayOwn(user: PolicyUser, tag: string): boolean {
    const owners = this.byTag.get(tag);
    if (!owners) return false;
    if (owners.anyMember) return true;
    if (this.knownIds.has(user.id)) return owners.userIds.has(user.id);
    // A user created after the engine last saw the user list.
    if (user.roles?.some((r) => owners.roles.has(r))) return true;
    return owners.tokens.some((t) => this.newcomerMatches(user, t));
  }

  /**
   * Whether `token` would resolve to `user` if the index also held it, by UserIndex.resolve's
   * rules: an email match beats a name match; among equal emails the highest id wins, among
   * equal names the lowest.
   */
  private newcomerMatches(user: PolicyUser, token: string): boolean {
    const text = token.endsWith("@") ? token.slice(0, -1) : token;
    const known = this.users.resolve(token);
    if (user.email && user.email === text) return !(known?.email === text && known.id > user.id);
    if (user.name !== text) return false;
    if (!known) return true;
    return known.email !== text && user.id < known.id;
  }
}

function collect(policy: Policy, tag: string, visiting: Set<string>, into: Owners): void {
  if (visiting.has(tag)) return;
  visiting.add(tag);
  for (const owner of policy.tagOwners.get(tag) ?? []) {
    if (owner.startsWith("tag:")) {
      collect(policy, owner, visiting, into);
    } else if (owner.startsWith("group:")) {
      into.tokens.push(...(policy.groups.get(owner) ?? []));
    } else if (owner === "autogroup:member") {
      into.anyMember = true;
    } else if (owner.startsWith("autogroup:")) {
      into.roles.add(owner.slice("autogroup:".length));
    } else {
      into.tokens.push(owner);
    }
  }
  visiting.delete(tag);
}
