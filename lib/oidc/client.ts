/**
 * The relying party's side of OpenID Connect, on oauth4webapi: discovery from `oidc.issuer`, the
 * authorization URL (state, nonce, PKCE), and the callback (the code exchanged for tokens, the ID
 * token's signature checked against the provider's JWKS, its issuer, audience, expiry and nonce;
 * then the userinfo endpoint). The library keeps the JWKS for at most five minutes and fetches
 * it again for a key id it does not know (key rotation).
 *
 * The provider may be down: `discover()` tries once; `ready()` tries again (at most every
 * `retryMs`) whenever a login needs the provider, so logins fail clearly until it is back.
 */
import * as oauth from "oauth4webapi";
import type { OidcConfig } from "../config/config.ts";
import { claimsFrom, type OidcClaims, withUserinfo } from "./claims.ts";

/**
 * A login that cannot go on. `status` and `message` are for the browser; `detail` is for the log
 * (it never holds a code, a token or a secret: only library error messages and codes).
 */
export class OidcError extends Error {
  override name = "OidcError";
  constructor(readonly status: number, message: string, readonly detail = "") {
    super(message);
  }
}

export interface OidcClientOptions {
  config: OidcConfig;
  /** The client secret (`client_secret`, or the contents of `client_secret_path`). */
  clientSecret: string;
  /** `<server_url>/oidc/callback`. */
  redirectUri: string;
  /** How long to wait between two discovery attempts while the provider is down. */
  retryMs?: number;
  /** Each request to the provider gives up after this long. */
  timeoutMs?: number;
  now?: () => number;
}

/** What the callback learned: who logged in, and until when the ID token is valid. */
export interface OidcIdentity {
  claims: OidcClaims;
  /** The ID token's `exp`. */
  tokenExpiry: Date;
}

/** What the login start keeps for the callback (server-side, never in the browser). */
export interface OidcTransaction {
  state: string;
  nonce: string;
  /** The PKCE code verifier; null without PKCE. */
  codeVerifier: string | null;
  /**
   * Where the provider sends the browser back; the client's own (`<server_url>/oidc/callback`)
   * when unset. The admin UI's sign-in has its own, so its flows never mix with node logins.
   */
  redirectUri?: string;
}

export class OidcClient {
  readonly #cfg: OidcConfig;
  readonly #client: oauth.Client;
  readonly #redirectUri: string;
  readonly #clientSecret: string;
  readonly #options: { signal: () => AbortSignal; [oauth.allowInsecureRequests]?: boolean };
  readonly #retryMs: number;
  readonly #now: () => number;
  #as: oauth.AuthorizationServer | null = null;
  #lastAttempt = -Infinity;
  #discovering: Promise<oauth.AuthorizationServer> | null = null;
  #lastError = "";

  constructor(opts: OidcClientOptions) {
    this.#cfg = opts.config;
    this.#client = { client_id: opts.config.clientId };
    this.#clientSecret = opts.clientSecret;
    this.#redirectUri = opts.redirectUri;
    this.#retryMs = opts.retryMs ?? 10_000;
    this.#now = opts.now ?? Date.now;
    const timeoutMs = opts.timeoutMs ?? 10_000;
    this.#options = {
      signal: () => AbortSignal.timeout(timeoutMs),
      // headscale accepts http:// issuers (a provider on the same host or in a lab).
      ...(new URL(opts.config.issuer).protocol === "http:"
        ? { [oauth.allowInsecureRequests]: true }
        : {}),
    };
  }

  /** True once discovery succeeded. */
  get available(): boolean {
    return this.#as !== null;
  }

  /** Why the last discovery failed ("" if none did). */
  get lastError(): string {
    return this.#lastError;
  }

  /** Fetches the issuer's metadata now; rejects (OidcError 503) when the provider is not there. */
  discover(): Promise<oauth.AuthorizationServer> {
    if (this.#as) return Promise.resolve(this.#as);
    this.#discovering ??= this.#discover().finally(() => this.#discovering = null);
    return this.#discovering;
  }

  async #discover(): Promise<oauth.AuthorizationServer> {
    this.#lastAttempt = this.#now();
    const issuer = new URL(this.#cfg.issuer);
    try {
      const response = await oauth.discoveryRequest(issuer, {
        ...this.#options,
        algorithm: "oidc",
      });
      const as = await oauth.processDiscoveryResponse(issuer, response);
      if (!as.authorization_endpoint || !as.token_endpoint || !as.jwks_uri) {
        throw new Error("the metadata lacks authorization_endpoint, token_endpoint or jwks_uri");
      }
      this.#as = as;
      this.#lastError = "";
      return as;
    } catch (e) {
      this.#lastError = describeError(e);
      throw new OidcError(
        503,
        "the identity provider cannot be reached; try again later",
        `discovery of ${this.#cfg.issuer} failed: ${this.#lastError}`,
      );
    }
  }

  /** The provider's metadata, discovering it again if it was down (at most every retryMs). */
  async ready(): Promise<oauth.AuthorizationServer> {
    if (this.#as) return this.#as;
    if (!this.#discovering && this.#now() - this.#lastAttempt < this.#retryMs) {
      throw new OidcError(
        503,
        "the identity provider cannot be reached; try again later",
        `discovery of ${this.#cfg.issuer} failed: ${this.#lastError}`,
      );
    }
    return await this.discover();
  }

  /** A new transaction (random state, nonce and, with PKCE, code verifier). */
  newTransaction(opts: { redirectUri?: string } = {}): OidcTransaction {
    return {
      state: oauth.generateRandomState(),
      nonce: oauth.generateRandomNonce(),
      codeVerifier: this.#cfg.pkce.enabled ? oauth.generateRandomCodeVerifier() : null,
      ...(opts.redirectUri ? { redirectUri: opts.redirectUri } : {}),
    };
  }

  /** Where to send the browser. */
  async authorizationUrl(tx: OidcTransaction): Promise<URL> {
    const as = await this.ready();
    const url = new URL(as.authorization_endpoint!);
    const p = url.searchParams;
    // extra_params first: the protocol's own parameters cannot be overridden by them.
    for (const [k, v] of Object.entries(this.#cfg.extraParams)) p.set(k, v);
    p.set("client_id", this.#cfg.clientId);
    p.set("redirect_uri", tx.redirectUri ?? this.#redirectUri);
    p.set("response_type", "code");
    p.set("scope", this.#cfg.scope.join(" "));
    p.set("state", tx.state);
    p.set("nonce", tx.nonce);
    if (tx.codeVerifier !== null) {
      const s256 = this.#cfg.pkce.method === "S256";
      p.set(
        "code_challenge",
        s256 ? await oauth.calculatePKCECodeChallenge(tx.codeVerifier) : tx.codeVerifier,
      );
      p.set("code_challenge_method", s256 ? "S256" : "plain");
    }
    return url;
  }

  /**
   * The callback: `params` are the query the provider sent the browser back with, `tx` what the
   * login start kept. Resolves with the validated identity; rejects with OidcError.
   */
  async complete(params: URLSearchParams, tx: OidcTransaction): Promise<OidcIdentity> {
    const as = await this.ready();
    let callback: URLSearchParams;
    try {
      callback = oauth.validateAuthResponse(as, this.#client, params, tx.state);
    } catch (e) {
      if (e instanceof oauth.AuthorizationResponseError) {
        throw new OidcError(
          403,
          `the identity provider did not log you in (${e.error})`,
          `authorization error from the provider: ${e.error}`,
        );
      }
      throw new OidcError(400, "the login response is not valid", describeError(e));
    }
    let tokens: oauth.TokenEndpointResponse;
    let tokenResponse: Response;
    try {
      tokenResponse = await oauth.authorizationCodeGrantRequest(
        as,
        this.#client,
        this.#clientAuth(as),
        callback,
        tx.redirectUri ?? this.#redirectUri,
        tx.codeVerifier ?? oauth.nopkce,
        this.#options,
      );
      tokens = await oauth.processAuthorizationCodeResponse(as, this.#client, tokenResponse, {
        expectedNonce: tx.nonce,
        requireIdToken: true,
      });
    } catch (e) {
      throw new OidcError(
        403,
        "the login could not be verified",
        `token exchange: ${describeError(e)}`,
      );
    }
    try {
      // The ID token came over TLS from the token endpoint, but we check its signature anyway:
      // an http:// issuer, a proxy or a misrouted token endpoint must not be able to forge one.
      await oauth.validateApplicationLevelSignature(as, tokenResponse, this.#options);
    } catch (e) {
      throw new OidcError(
        403,
        "the login could not be verified",
        `ID token signature: ${describeError(e)}`,
      );
    }
    const idToken = oauth.getValidatedIdTokenClaims(tokens)!;
    let claims = claimsFrom(idToken as Record<string, unknown>);
    if (as.userinfo_endpoint) {
      try {
        const r = await oauth.userInfoRequest(as, this.#client, tokens.access_token, this.#options);
        const info = await oauth.processUserInfoResponse(as, this.#client, idToken.sub, r);
        claims = withUserinfo(claims, info as Record<string, unknown>);
      } catch {
        // As headscale: without userinfo, the ID token's claims are used alone.
      }
    }
    return { claims, tokenExpiry: new Date(idToken.exp * 1000) };
  }

  #clientAuth(as: oauth.AuthorizationServer): oauth.ClientAuth {
    const methods = as.token_endpoint_auth_methods_supported;
    if (
      methods && !methods.includes("client_secret_basic") && methods.includes("client_secret_post")
    ) {
      return oauth.ClientSecretPost(this.#clientSecret);
    }
    return oauth.ClientSecretBasic(this.#clientSecret);
  }
}

/** A library error as one line: its message and code; never a request or response body. */
function describeError(e: unknown): string {
  if (e instanceof oauth.ResponseBodyError) return `${e.error} (HTTP ${e.status})`;
  if (e instanceof Error) {
    const code = (e as { code?: unknown }).code;
    const cause = e.cause instanceof Error ? `: ${e.cause.message}` : "";
    return `${e.message}${typeof code === "string" ? ` [${code}]` : ""}${cause}`;
  }
  return String(e);
}
