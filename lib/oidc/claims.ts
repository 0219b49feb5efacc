/**
 * What an OpenID provider says about a user, and whether the configuration lets that user in.
 * The checks are headscale's (hscontrol/oidc.go doOIDCAuthorization), in its order:
 *
 * 1. `allowed_groups`: one of the user's `groups` must be listed;
 * 2. with `allowed_domains` or `allowed_users` set, the e-mail must be verified (unless
 *    `email_verified_required: false`): an unverified address proves nothing;
 * 3. `allowed_domains`: the e-mail's domain (after the last `@`) must be listed;
 * 4. `allowed_users`: the e-mail must be listed.
 *
 * Identity is the issuer and the subject, never the e-mail (see `providerIdentifier`).
 */
import type { OidcConfig } from "../config/config.ts";

export interface OidcClaims {
  iss: string;
  sub: string;
  name: string;
  preferredUsername: string;
  email: string;
  emailVerified: boolean;
  picture: string;
  groups: string[];
}

/** Why a user is refused; `message` is what the user's browser shows, and the log line. */
export interface Refusal {
  reason: "group" | "unverified-email" | "domain" | "user";
  message: string;
}

function str(v: unknown): string {
  return typeof v === "string" ? v : "";
}

/** `email_verified` as providers send it: a boolean, or (some do) the string "true". */
function flexibleBool(v: unknown): boolean {
  return v === true || (typeof v === "string" && v.toLowerCase() === "true");
}

/** `groups` as a list of strings, or one string (some providers send a single group so). */
function flexibleStrings(v: unknown): string[] {
  if (typeof v === "string") return v === "" ? [] : [v];
  if (Array.isArray(v)) return v.filter((g): g is string => typeof g === "string");
  return [];
}

/** The claims of a validated ID token (iss and sub are always there: the library checked). */
export function claimsFrom(raw: Record<string, unknown>): OidcClaims {
  return {
    iss: str(raw.iss),
    sub: str(raw.sub),
    name: str(raw.name),
    preferredUsername: str(raw.preferred_username),
    email: str(raw.email),
    emailVerified: flexibleBool(raw.email_verified),
    picture: str(raw.picture),
    groups: flexibleStrings(raw.groups),
  };
}

/**
 * The userinfo endpoint's answer completes the ID token's claims (headscale does the same):
 * its values win where present, the token's stay otherwise. The caller has checked that the
 * userinfo `sub` is the token's (the library does: processUserInfoResponse).
 */
export function withUserinfo(claims: OidcClaims, raw: Record<string, unknown>): OidcClaims {
  const info = claimsFrom({ ...raw, iss: claims.iss, sub: claims.sub });
  return {
    ...claims,
    name: info.name || claims.name,
    preferredUsername: info.preferredUsername || claims.preferredUsername,
    email: info.email || claims.email,
    emailVerified: info.emailVerified || claims.emailVerified,
    picture: info.picture || claims.picture,
    groups: raw.groups !== undefined ? info.groups : claims.groups,
  };
}

type AllowLists = Pick<
  OidcConfig,
  "allowedDomains" | "allowedUsers" | "allowedGroups" | "emailVerifiedRequired"
>;

/** Null when the configuration lets the user in, else why not. */
export function authorize(cfg: AllowLists, c: OidcClaims): Refusal | null {
  if (cfg.allowedGroups.length > 0 && !cfg.allowedGroups.some((g) => c.groups.includes(g))) {
    return {
      reason: "group",
      message: "your account is not in any of the groups allowed to log in here",
    };
  }
  const emailTests = cfg.allowedDomains.length > 0 || cfg.allowedUsers.length > 0;
  if (emailTests && cfg.emailVerifiedRequired && !c.emailVerified) {
    return {
      reason: "unverified-email",
      message: "your e-mail address is not verified by the identity provider",
    };
  }
  if (cfg.allowedDomains.length > 0) {
    const at = c.email.lastIndexOf("@");
    const domain = at < 0 ? "" : c.email.slice(at + 1).toLowerCase();
    if (!cfg.allowedDomains.some((d) => d.toLowerCase() === domain)) {
      return {
        reason: "domain",
        message: "the domain of your e-mail address is not allowed to log in here",
      };
    }
  }
  if (cfg.allowedUsers.length > 0 && !cfg.allowedUsers.includes(c.email)) {
    return {
      reason: "user",
      message: "your account is not among the users allowed to log in here",
    };
  }
  return null;
}

/**
 * The user's key: issuer and subject, in headscale's form (`<issuer without trailing slash>/<sub>`)
 * so users imported from headscale (`migrate from-headscale`) are found again. With the issuer
 * fixed by the configuration, different subjects always give different keys.
 */
export function providerIdentifier(iss: string, sub: string): string {
  return `${iss.replace(/\/+$/, "")}/${sub}`;
}

/**
 * The e-mail to keep on the user: only one the provider verified, unless the configuration
 * trusts unverified addresses (`email_verified_required: false`), as headscale's FromClaim.
 */
export function trustedEmail(c: OidcClaims, emailVerifiedRequired: boolean): string {
  if (emailVerifiedRequired && !c.emailVerified) return "";
  return /^[^@\s]+@[^@\s]+$/.test(c.email) ? c.email : "";
}
