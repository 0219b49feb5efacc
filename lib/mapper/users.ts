/**
 * How users appear on the wire: UserProfile in maps, User and Login in RegisterResponse. Tagged
 * nodes belong to no user; like headscale they are shown as the synthetic "tagged-devices" user.
 */
import type { UserRecord } from "../store/types.ts";
import type { RegisterResponse, UserProfile } from "../tailcfg/types.ts";

export const TAGGED_DEVICES_USER_ID = 2147455555;

export const TAGGED_DEVICES: UserRecord = {
  id: TAGGED_DEVICES_USER_ID,
  name: "tagged-devices",
  displayName: "Tagged Devices",
  email: "",
  providerId: "",
  provider: "",
  profilePicUrl: "",
  createdAt: new Date(0),
};

/** The wire user id of a node: its owner, or the tagged-devices user. */
export function wireUserId(node: { userId: number | null; tags: readonly string[] }): number {
  return node.tags.length > 0 || node.userId === null ? TAGGED_DEVICES_USER_ID : node.userId;
}

function loginName(u: UserRecord): string {
  return u.email || u.name || String(u.id);
}

function displayName(u: UserRecord): string {
  return u.displayName || loginName(u);
}

export function userProfile(u: UserRecord): UserProfile {
  const p: UserProfile = { ID: u.id, LoginName: loginName(u), DisplayName: displayName(u) };
  if (u.profilePicUrl) p.ProfilePicURL = u.profilePicUrl;
  return p;
}

export function registerIdentity(u: UserRecord): Pick<RegisterResponse, "User" | "Login"> {
  const pic = u.profilePicUrl ? { ProfilePicURL: u.profilePicUrl } : {};
  return {
    User: {
      ID: u.id,
      DisplayName: displayName(u),
      ...pic,
      ...(u.createdAt.getTime() > 0 ? { Created: u.createdAt.toISOString() } : {}),
    },
    Login: {
      ID: u.id,
      Provider: u.provider,
      LoginName: loginName(u),
      DisplayName: displayName(u),
      ...pic,
    },
  };
}
