/**
 * The admin UI in-process: a real server (lib/server/server.ts) on a free port, the CLI against
 * its socket, and a small browser: a cookie jar and form posts with the CSRF token taken from the
 * page, as a browser would send them.
 */
import type { Config } from "../../lib/config/config.ts";
import { loadConfig } from "../../lib/config/load.ts";
import { silentLogger } from "../../lib/log/log.ts";
import { type RunningServer, startServer } from "../../lib/server/server.ts";
import { runCli } from "../../lib/cli/run.ts";
import { captureIO } from "./cli_io.ts";
import { freePort, writeConfig } from "./server_process.ts";

export interface UiServer {
  server: RunningServer;
  base: string;
  dir: string;
  configPath: string;
  /** Runs the CLI in-process; resolves with exit code and stdout. */
  cli(...args: string[]): Promise<{ code: number; out: string; err: string }>;
  close(): Promise<void>;
}

/** `configure` adjusts the loaded config (values the YAML helper does not write). */
export async function startUiServer(
  extraConfig = "",
  configure?: (config: Config) => void,
): Promise<UiServer> {
  const dir = await Deno.makeTempDir({ prefix: "hsd-ui-" });
  const port = freePort();
  const configPath = writeConfig(dir, port, extraConfig);
  const { config } = loadConfig({ path: configPath });
  configure?.(config);
  const server = await startServer(config, silentLogger());
  return {
    server,
    base: `http://127.0.0.1:${port}`,
    dir,
    configPath,
    async cli(...args) {
      const io = captureIO();
      const code = await runCli(["-c", configPath, ...args], io);
      return { code, out: io.out.join("\n"), err: io.err.join("\n") };
    },
    async close() {
      await server.close();
      await Deno.remove(dir, { recursive: true });
    },
  };
}

/** A browser-like client: keeps cookies, sends same-origin headers, never follows redirects. */
export class Browser {
  readonly cookies = new Map<string, string>();
  constructor(readonly origin: string) {}

  #cookieHeader(): string {
    return [...this.cookies].map(([k, v]) => `${k}=${v}`).join("; ");
  }

  #keep(res: Response): void {
    for (const line of res.headers.getSetCookie()) {
      const [pair] = line.split(";");
      const eq = pair.indexOf("=");
      const name = pair.slice(0, eq).trim();
      const value = pair.slice(eq + 1).trim();
      if (/max-age=0/i.test(line) || value === "") this.cookies.delete(name);
      else this.cookies.set(name, value);
    }
  }

  async get(path: string, headers: Record<string, string> = {}): Promise<Response> {
    const res = await fetch(new URL(path, this.origin), {
      redirect: "manual",
      headers: { cookie: this.#cookieHeader(), ...headers },
    });
    this.#keep(res);
    return res;
  }

  /** GET and read the body as text. */
  async page(path: string): Promise<{ status: number; text: string; res: Response }> {
    const res = await this.get(path);
    return { status: res.status, text: await res.text(), res };
  }

  async post(
    path: string,
    fields: Record<string, string>,
    headers: Record<string, string> = {},
  ): Promise<Response> {
    const res = await fetch(new URL(path, this.origin), {
      method: "POST",
      redirect: "manual",
      headers: {
        "content-type": "application/x-www-form-urlencoded",
        origin: this.origin,
        "sec-fetch-site": "same-origin",
        cookie: this.#cookieHeader(),
        ...headers,
      },
      body: new URLSearchParams(fields).toString(),
    });
    this.#keep(res);
    return res;
  }

  /** The CSRF token of the signed-in session, read from a page's forms. */
  async csrf(path = "/admin/sessions"): Promise<string> {
    const { text } = await this.page(path);
    const m = /name="csrf" value="([^"]+)"/.exec(text);
    if (!m) throw new Error(`no CSRF token on ${path}`);
    return m[1];
  }

  /** POSTs a form with the CSRF token; resolves with the response (a 303 on success). */
  async submit(path: string, fields: Record<string, string> = {}): Promise<Response> {
    const res = await this.post(path, { csrf: await this.csrf(), ...fields });
    await res.body?.cancel();
    return res;
  }

  /** The flash message of the next page after a redirect. */
  async follow(res: Response): Promise<{ status: number; text: string }> {
    const location = res.headers.get("location");
    if (!location) throw new Error(`no redirect (status ${res.status})`);
    const { status, text } = await this.page(location);
    return { status, text };
  }
}

/** Signs `browser` in with a one-time link from the CLI; returns the link. */
export async function signInWithLink(ui: UiServer, browser: Browser, label = "admin") {
  const { code, out, err } = await ui.cli("admin", "signin-link", "--label", label);
  if (code !== 0) throw new Error(`admin signin-link failed: ${err}`);
  const link = out.trim();
  const token = new URL(link).searchParams.get("token")!;
  const page = await browser.page(new URL(link).pathname + new URL(link).search);
  if (page.status !== 200) throw new Error(`link page: ${page.status} ${page.text}`);
  const res = await browser.post("/admin/signin/link", { token });
  await res.body?.cancel();
  if (res.status !== 303) throw new Error(`sign-in POST answered ${res.status}`);
  return { link, token };
}
