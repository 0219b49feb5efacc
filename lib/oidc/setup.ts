/**
 * OIDC at start: the client secret (`client_secret`, or the file `client_secret_path` names,
 * trimmed), then discovery. A provider that cannot be reached stops the start when
 * `oidc.only_start_if_oidc_is_available` is true (headscale's default); otherwise the server
 * starts and OIDC logins fail with a clear page until discovery succeeds (tried again on each
 * login, at most every 10 s).
 */
import type { Config } from "../config/config.ts";
import type { Logger } from "../log/log.ts";
import { OidcClient } from "./client.ts";

export class OidcStartError extends Error {
  override name = "OidcStartError";
}

export async function startOidc(config: Config, log: Logger): Promise<OidcClient | null> {
  const cfg = config.oidc;
  if (!cfg) return null;
  let secret = cfg.clientSecret;
  if (cfg.clientSecretPath !== "") {
    try {
      secret = (await Deno.readTextFile(cfg.clientSecretPath)).trim();
    } catch (e) {
      throw new OidcStartError(
        `oidc.client_secret_path: cannot read ${cfg.clientSecretPath}: ${(e as Error).message}`,
      );
    }
    if (secret === "") {
      throw new OidcStartError(`oidc.client_secret_path: ${cfg.clientSecretPath} is empty`);
    }
  }
  const client = new OidcClient({
    config: cfg,
    clientSecret: secret,
    redirectUri: `${config.serverUrl}/oidc/callback`,
  });
  try {
    await client.discover();
    log.info("OIDC provider ready", { issuer: cfg.issuer });
  } catch {
    if (cfg.onlyStartIfOidcIsAvailable) {
      throw new OidcStartError(
        `oidc.issuer: the provider is not available (${client.lastError}); not starting ` +
          "(oidc.only_start_if_oidc_is_available: true)",
      );
    }
    log.warn("OIDC provider not available; OIDC logins fail until it is", {
      issuer: cfg.issuer,
      error: client.lastError,
    });
  }
  return client;
}
