/**
 * A small OpenID provider for tests, real on the wire: discovery, an authorization endpoint with
 * a login form, a token endpoint (client secret, single-use codes bound to the redirect URI,
 * PKCE S256 and plain), a JWKS, and userinfo. ID tokens are RS256 JWTs signed with WebCrypto.
 * Tests pick who logs in (`users`), and can make the provider misbehave (`tamper`) or go down.
 *
 * ```ts
 * const idp = await startOidcProvider({ clientId: "hs", clientSecret: "s" });
 * idp.users.set("alice", { sub: "1", email: "alice@example.com", email_verified: true });
 * // a browser: GET <auth url> → form; POST /login {tx, username} → 302 <redirect_uri>?code&state
 * await idp.close();
 * ```
 */
import { Buffer } from "node:buffer";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";

export type UserClaims = Record<string, unknown> & { sub: string };

export interface Tamper {
  /** Sign ID tokens with a key not in the JWKS. */
  foreignKey?: boolean;
  /** Put this `iss` / `aud` / `nonce` in ID tokens instead of the real ones. */
  iss?: string;
  aud?: string;
  nonce?: string;
  /** ID tokens that expired this many seconds ago. */
  expiredBy?: number;
  /** Leave PKCE unchecked at the token endpoint. */
  ignorePkce?: boolean;
}

export interface OidcProviderOptions {
  clientId: string;
  clientSecret: string;
  /** Listen address; default 127.0.0.1. */
  hostname?: string;
  /** ID token lifetime in seconds; default 3600. */
  idTokenTtl?: number;
}

interface Tx {
  clientId: string;
  redirectUri: string;
  state: string | null;
  nonce: string | null;
  challenge: string | null;
  method: string | null;
  scope: string;
}

interface Code extends Tx {
  username: string;
  used: boolean;
}

const b64u = (bytes: Uint8Array | ArrayBuffer) =>
  btoa(String.fromCharCode(...new Uint8Array(bytes))).replace(/\+/g, "-").replace(/\//g, "_")
    .replace(/=+$/, "");
const b64uText = (text: string) => b64u(new TextEncoder().encode(text));

function random(): string {
  return b64u(crypto.getRandomValues(new Uint8Array(24)));
}

async function rsaKey(): Promise<CryptoKeyPair> {
  return await crypto.subtle.generateKey(
    {
      name: "RSASSA-PKCS1-v1_5",
      modulusLength: 2048,
      publicExponent: new Uint8Array([1, 0, 1]),
      hash: "SHA-256",
    },
    true,
    ["sign", "verify"],
  );
}

async function readBody(req: IncomingMessage): Promise<URLSearchParams> {
  const chunks: Uint8Array[] = [];
  for await (const c of req) chunks.push(c as Uint8Array);
  return new URLSearchParams(new TextDecoder().decode(Buffer.concat(chunks)));
}

export class OidcProvider {
  readonly users = new Map<string, UserClaims>();
  tamper: Tamper = {};
  /** While true every endpoint answers 503 (the provider is down). */
  down = false;
  /** Token endpoint requests seen (with the code_verifier they carried, if any). */
  readonly tokenRequests: { codeVerifier: string | null }[] = [];
  /** Authorization requests seen (their query). */
  readonly authorizationRequests: URLSearchParams[] = [];
  readonly #txs = new Map<string, Tx>();
  readonly #codes = new Map<string, Code>();
  readonly #access = new Map<string, string>();
  #keys: { kid: string; pair: CryptoKeyPair }[] = [];
  #foreign!: CryptoKeyPair;

  private constructor(
    readonly issuer: string,
    private readonly server: Server,
    private readonly opts: OidcProviderOptions,
  ) {}

  static async start(opts: OidcProviderOptions): Promise<OidcProvider> {
    const server = createServer();
    const hostname = opts.hostname ?? "127.0.0.1";
    await new Promise<void>((resolve) => server.listen(0, hostname, resolve));
    const { port } = server.address() as { port: number };
    const host = hostname.includes(":") ? `[${hostname}]` : hostname;
    const p = new OidcProvider(`http://${host}:${port}`, server, opts);
    p.#keys = [{ kid: random(), pair: await rsaKey() }];
    p.#foreign = await rsaKey();
    server.on("request", (req, res) => {
      p.#handle(req, res).catch((e) => {
        res.writeHead(500).end(String(e));
      });
    });
    return p;
  }

  /** A new signing key replaces the old one (which leaves the JWKS). */
  async rotateKeys(): Promise<void> {
    this.#keys = [{ kid: random(), pair: await rsaKey() }];
  }

  /** Plays the browser's part at the provider: the login form for `authUrl`, as `username`. */
  async login(authUrl: string, username: string): Promise<URL> {
    const form = await fetch(authUrl);
    const html = await form.text();
    const tx = /name="tx" value="([^"]+)"/.exec(html)?.[1];
    if (!tx) throw new Error(`no login form at ${authUrl}: ${form.status} ${html}`);
    const r = await fetch(`${this.issuer}/login`, {
      method: "POST",
      body: new URLSearchParams({ tx, username }),
      redirect: "manual",
    });
    await r.body?.cancel();
    const location = r.headers.get("location");
    if (r.status !== 302 || !location) throw new Error(`login as ${username}: ${r.status}`);
    return new URL(location);
  }

  async close(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise((resolve) => this.server.close(resolve));
  }

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? "/", this.issuer);
    const json = (status: number, body: unknown, headers: Record<string, string> = {}) => {
      res.writeHead(status, { "content-type": "application/json", ...headers });
      res.end(JSON.stringify(body));
    };
    if (this.down) return json(503, { error: "temporarily_unavailable" });
    switch (`${req.method} ${url.pathname}`) {
      case "GET /.well-known/openid-configuration":
        return json(200, {
          issuer: this.issuer,
          authorization_endpoint: `${this.issuer}/authorize`,
          token_endpoint: `${this.issuer}/token`,
          jwks_uri: `${this.issuer}/jwks`,
          userinfo_endpoint: `${this.issuer}/userinfo`,
          response_types_supported: ["code"],
          subject_types_supported: ["public"],
          id_token_signing_alg_values_supported: ["RS256"],
          code_challenge_methods_supported: ["S256", "plain"],
          token_endpoint_auth_methods_supported: ["client_secret_basic", "client_secret_post"],
        });
      case "GET /jwks": {
        const keys = [];
        for (const { kid, pair } of this.#keys) {
          const jwk = await crypto.subtle.exportKey("jwk", pair.publicKey);
          keys.push({ kty: jwk.kty, n: jwk.n, e: jwk.e, kid, alg: "RS256", use: "sig" });
        }
        return json(200, { keys });
      }
      case "GET /authorize": {
        this.authorizationRequests.push(url.searchParams);
        const q = url.searchParams;
        if (q.get("client_id") !== this.opts.clientId) {
          return json(400, { error: "unauthorized_client" });
        }
        if (q.get("response_type") !== "code") {
          return json(400, { error: "unsupported_response_type" });
        }
        const tx = random();
        this.#txs.set(tx, {
          clientId: q.get("client_id")!,
          redirectUri: q.get("redirect_uri") ?? "",
          state: q.get("state"),
          nonce: q.get("nonce"),
          challenge: q.get("code_challenge"),
          method: q.get("code_challenge_method"),
          scope: q.get("scope") ?? "",
        });
        res.writeHead(200, { "content-type": "text/html" });
        return void res.end(
          `<form method="post" action="/login"><input type="hidden" name="tx" value="${tx}">` +
            `<input name="username"><button>Log in</button></form>`,
        );
      }
      case "POST /login": {
        const body = await readBody(req);
        const tx = this.#txs.get(body.get("tx") ?? "");
        const username = body.get("username") ?? "";
        if (!tx || !this.users.has(username)) return json(400, { error: "unknown user or tx" });
        this.#txs.delete(body.get("tx")!);
        const code = random();
        this.#codes.set(code, { ...tx, username, used: false });
        const back = new URL(tx.redirectUri);
        back.searchParams.set("code", code);
        if (tx.state !== null) back.searchParams.set("state", tx.state);
        back.searchParams.set("iss", this.issuer);
        res.writeHead(302, { location: back.toString() });
        return void res.end();
      }
      case "POST /token":
        return await this.#token(req, json);
      case "GET /userinfo": {
        const token = /^Bearer (.+)$/.exec(req.headers.authorization ?? "")?.[1] ?? "";
        const username = this.#access.get(token);
        if (!username) {
          return json(401, { error: "invalid_token" }, { "www-authenticate": "Bearer" });
        }
        return json(200, this.users.get(username));
      }
    }
    json(404, { error: "not_found" });
  }

  async #token(req: IncomingMessage, json: (s: number, b: unknown) => void): Promise<void> {
    const body = await readBody(req);
    let clientId = body.get("client_id");
    let secret = body.get("client_secret");
    const basic = /^Basic (.+)$/.exec(req.headers.authorization ?? "")?.[1];
    if (basic) {
      const [id, s] = atob(basic).split(":").map(decodeURIComponent);
      clientId = id;
      secret = s;
    }
    if (clientId !== this.opts.clientId || secret !== this.opts.clientSecret) {
      return json(401, { error: "invalid_client" });
    }
    const verifier = body.get("code_verifier");
    this.tokenRequests.push({ codeVerifier: verifier });
    const code = this.#codes.get(body.get("code") ?? "");
    if (body.get("grant_type") !== "authorization_code" || !code || code.used) {
      return json(400, { error: "invalid_grant" });
    }
    code.used = true;
    if (code.redirectUri !== body.get("redirect_uri")) return json(400, { error: "invalid_grant" });
    if (code.challenge !== null && !this.tamper.ignorePkce) {
      const expected = code.method === "S256" && verifier
        ? b64u(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(verifier)))
        : verifier;
      if (expected !== code.challenge) return json(400, { error: "invalid_grant" });
    }
    const user = this.users.get(code.username)!;
    const now = Math.floor(Date.now() / 1000) - (this.tamper.expiredBy ?? 0);
    const claims = {
      ...user,
      iss: this.tamper.iss ?? this.issuer,
      aud: this.tamper.aud ?? this.opts.clientId,
      iat: now,
      exp: now + (this.tamper.expiredBy ? 1 : this.opts.idTokenTtl ?? 3600),
      ...(code.nonce !== null || this.tamper.nonce
        ? { nonce: this.tamper.nonce ?? code.nonce }
        : {}),
    };
    const { kid, pair } = this.#keys[0];
    const header = b64uText(JSON.stringify({ alg: "RS256", typ: "JWT", kid }));
    const payload = b64uText(JSON.stringify(claims));
    const key = this.tamper.foreignKey ? this.#foreign.privateKey : pair.privateKey;
    const sig = await crypto.subtle.sign(
      "RSASSA-PKCS1-v1_5",
      key,
      new TextEncoder().encode(`${header}.${payload}`),
    );
    const access = random();
    this.#access.set(access, code.username);
    json(200, {
      access_token: access,
      token_type: "Bearer",
      expires_in: 3600,
      id_token: `${header}.${payload}.${b64u(sig)}`,
    });
  }
}

export function startOidcProvider(opts: OidcProviderOptions): Promise<OidcProvider> {
  return OidcProvider.start(opts);
}
