/** `oidc.*` read as headscale reads them: on by the issuer, validated, secrets from a file. */
import assert from "node:assert/strict";
import { ConfigError, expandEnv, parseConfigText } from "../lib/config/load.ts";

const BASE = "oidc:\n  issuer: https://id.example.com/realms/x\n  client_id: hs\n";

function refused(text: string, pattern: RegExp, env: Record<string, string> = {}) {
  assert.throws(
    () => parseConfigText(text, { env }),
    (e) => e instanceof ConfigError && pattern.test(e.message),
    `expected ${pattern}`,
  );
}

Deno.test("oidc config: no issuer, no OIDC (other keys have no effect)", () => {
  assert.equal(parseConfigText("").config.oidc, null);
  assert.equal(parseConfigText("oidc:\n  scope: [openid]").config.oidc, null);
});

Deno.test("oidc config: headscale's keys and defaults", () => {
  const { config } = parseConfigText(BASE + "  client_secret: s3cret\n");
  assert.deepEqual(config.oidc, {
    issuer: "https://id.example.com/realms/x",
    clientId: "hs",
    clientSecret: "s3cret",
    clientSecretPath: "",
    scope: ["openid", "profile", "email"],
    extraParams: {},
    allowedDomains: [],
    allowedUsers: [],
    allowedGroups: [],
    emailVerifiedRequired: true,
    pkce: { enabled: false, method: "S256" },
    useExpiryFromToken: false,
    onlyStartIfOidcIsAvailable: true,
  });
  const full = parseConfigText(
    BASE + `  client_secret_path: "\${CREDENTIALS_DIRECTORY}/oidc_secret"
  scope: [openid, profile, email, groups]
  extra_params: { domain_hint: example.com, prompt: login }
  allowed_domains: [example.com]
  allowed_users: [alice@example.com]
  allowed_groups: [/admins]
  email_verified_required: false
  pkce: { enabled: true, method: plain }
  use_expiry_from_token: true
  only_start_if_oidc_is_available: false
`,
    { env: { CREDENTIALS_DIRECTORY: "/run/credentials/hs.service" } },
  ).config.oidc!;
  assert.equal(full.clientSecretPath, "/run/credentials/hs.service/oidc_secret");
  assert.deepEqual(full.scope, ["openid", "profile", "email", "groups"]);
  assert.deepEqual(full.extraParams, { domain_hint: "example.com", prompt: "login" });
  assert.deepEqual(full.allowedGroups, ["/admins"]);
  assert.deepEqual(full.pkce, { enabled: true, method: "plain" });
  assert.equal(full.emailVerifiedRequired, false);
  assert.equal(full.useExpiryFromToken, true);
  assert.equal(full.onlyStartIfOidcIsAvailable, false);
});

Deno.test("oidc config: environment variables override, as every key", () => {
  const { config } = parseConfigText("", {
    env: {
      HEADSCALE_OIDC_ISSUER: "https://sso.example.org",
      HEADSCALE_OIDC_CLIENT_ID: "c",
      HEADSCALE_OIDC_CLIENT_SECRET: "s",
      HEADSCALE_OIDC_ALLOWED_DOMAINS: "a.org b.org",
    },
  });
  assert.equal(config.oidc?.issuer, "https://sso.example.org");
  assert.deepEqual(config.oidc?.allowedDomains, ["a.org", "b.org"]);
});

Deno.test("oidc config: refusals name the key", () => {
  refused(
    "oidc:\n  issuer: https://id.example.com\n  client_secret: s",
    /^oidc\.client_id: is required/m,
  );
  refused(BASE, /oidc\.client_secret: oidc\.client_secret or oidc\.client_secret_path is required/);
  refused(
    BASE + "  client_secret: a\n  client_secret_path: /x\n",
    /oidc\.client_secret: .*mutually exclusive/,
  );
  refused(
    "oidc:\n  issuer: id.example.com\n  client_id: a\n  client_secret: b",
    /oidc\.issuer: must be an http/,
  );
  refused(
    "oidc:\n  issuer: ftp://id.example.com\n  client_id: a\n  client_secret: b",
    /oidc\.issuer: must be an http/,
  );
  refused(
    BASE + "  client_secret: s\n  pkce: { method: S512 }\n",
    /oidc\.pkce\.method: must be S256 or plain/,
  );
  refused(BASE + "  client_secret: s\n  scope: [profile]\n", /oidc\.scope: must include "openid"/);
  // headscale removed these; we refuse them the same way.
  refused(
    BASE + "  client_secret: s\n  expiry: 180d\n",
    /oidc\.expiry is no longer supported: use node\.expiry/,
  );
  refused(
    BASE + "  client_secret: s\n  map_legacy_users: true\n",
    /oidc\.map_legacy_users is no longer supported/,
  );
});

Deno.test("oidc config: expandEnv is Go's os.ExpandEnv", () => {
  const env = { A: "1", B_C: "2" };
  assert.equal(expandEnv("$A/${B_C}/$MISSING/x", env), "1/2//x");
  assert.equal(expandEnv("no vars", env), "no vars");
});
