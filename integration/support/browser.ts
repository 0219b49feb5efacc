/**
 * Headless Chromium for the admin UI's browser tests: Debian's `chromium` (never a downloaded
 * browser build) driven by playwright-core over its debugging pipe. Every page records what its
 * console reports (errors, CSP violations, uncaught exceptions), and screenshots go to one folder
 * that is kept after the run.
 *
 * ```ts
 * const browser = await launchBrowser({ name: "admin-ui" });
 * h.onClose(() => browser.close());
 * const page = await browser.newPage();
 * await page.goto(url);
 * await browser.screenshot(page, "machines");
 * assert.deepEqual(browser.consoleProblems, []);
 * ```
 */
import { fileURLToPath } from "node:url";
import { type Browser, type BrowserContext, chromium, type Page } from "playwright-core";

export type { Browser, BrowserContext, Page } from "playwright-core";

const REPO_ROOT = fileURLToPath(new URL("../../", import.meta.url));

/** `HEADSCALE_TEST_CHROMIUM`, else Debian's package. */
export function chromiumPath(): string {
  return Deno.env.get("HEADSCALE_TEST_CHROMIUM") || "/usr/bin/chromium";
}

/** Why the browser tests cannot run here (no Chromium), or undefined when they can. */
export async function browserSkipReason(): Promise<string | undefined> {
  const path = chromiumPath();
  try {
    const info = await Deno.stat(path);
    if (!info.isFile) return `${path} is not a file`;
  } catch {
    return `no Chromium at ${path}: apt-get install -y chromium (or set HEADSCALE_TEST_CHROMIUM)`;
  }
  return undefined;
}

/**
 * Switches that keep a headless Chromium to the page under test: no sandbox (tests run as root),
 * no GPU, and none of the background traffic (component updates, sync, field trials, QUIC probes)
 * that would try the internet and be refused many connections at a time on this machine.
 * playwright-core adds `--headless` and gives each launch a new empty profile directory
 * (`--user-data-dir`), removed on close.
 */
const CHROMIUM_ARGS = [
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--disable-domain-reliability",
  "--disable-breakpad",
  "--metrics-recording-only",
];

/** Page-side: turns each CSP violation into a console error, which {@link UiBrowser} records. */
const REPORT_CSP_VIOLATIONS = `document.addEventListener("securitypolicyviolation", (e) => {
  console.error("CSP violation: " + e.violatedDirective + " blocked " + (e.blockedURI || "(inline)") +
    " at " + e.sourceFile + ":" + e.lineNumber);
});`;

export interface LaunchOptions {
  /** Names the screenshot folder: `<artifacts root>/ui/<name>/`. */
  name: string;
  /**
   * `http://host:port` origins to treat as secure: a `Secure` cookie is refused over plain http
   * except from localhost, and test servers listen on the bridge address.
   */
  secureOrigins?: string[];
  /** Accept the throwaway CA of an https test server without installing it. */
  ignoreHttpsErrors?: boolean;
}

export interface PageOptions {
  /** CSS pixels. Default 1280×800 (desktop); e.g. 390×844 for a phone. */
  viewport?: { width: number; height: number };
  /** A new cookie jar instead of the shared one (another browser, signed out). */
  isolated?: boolean;
}

/** What a page's console reported that a clean page never does. */
export interface ConsoleProblem {
  page: string;
  kind: "console.error" | "console.warning" | "pageerror" | "csp";
  text: string;
}

/** A running Chromium with one shared context (one cookie jar) and the run's screenshot folder. */
export class UiBrowser {
  readonly consoleProblems: ConsoleProblem[] = [];
  /** Every origin a page requested something from (the UI must need only its own). */
  readonly requestedOrigins = new Set<string>();
  #context: BrowserContext | undefined;
  #shots = 0;
  #closed = false;

  private constructor(
    readonly browser: Browser,
    readonly options: LaunchOptions,
    /** Where screenshots go; kept after the run. */
    readonly artifactsDir: string,
  ) {}

  static async launch(options: LaunchOptions): Promise<UiBrowser> {
    if (!/^[a-z0-9-]{1,40}$/.test(options.name)) {
      throw new Error(
        `browser name must be 1-40 of [a-z0-9-], got ${JSON.stringify(options.name)}`,
      );
    }
    const root = Deno.env.get("HEADSCALE_TEST_ARTIFACTS") || `${REPO_ROOT}.artifacts`;
    const artifactsDir = `${root}/ui/${options.name}`;
    // Only this run's screenshots: an old one of a page the run never reached would mislead.
    await Deno.remove(artifactsDir, { recursive: true }).catch(() => {});
    await Deno.mkdir(artifactsDir, { recursive: true });
    const secure = options.secureOrigins ?? [];
    const browser = await chromium.launch({
      executablePath: chromiumPath(),
      headless: true,
      args: [
        ...CHROMIUM_ARGS,
        ...(secure.length > 0 ? [`--unsafely-treat-insecure-origin-as-secure=${secure}`] : []),
      ],
      timeout: 30_000,
    });
    try {
      const ui = new UiBrowser(browser, options, artifactsDir);
      ui.#context = await ui.#newContext();
      return ui;
    } catch (error) {
      await browser.close().catch(() => {});
      throw error;
    }
  }

  /** The shared context: one cookie jar for every page not opened `isolated`. */
  get context(): BrowserContext {
    if (!this.#context) throw new Error("browser not launched");
    return this.#context;
  }

  /** A new tab: in the shared context (signed in once, signed in everywhere) unless `isolated`. */
  async newPage(options: PageOptions = {}): Promise<Page> {
    const context = options.isolated ? await this.#newContext() : this.context;
    const page = await context.newPage();
    if (options.viewport) await page.setViewportSize(options.viewport);
    return page;
  }

  /**
   * Saves a PNG as `NN-<name>.png` (numbered in the order taken) and returns its path. `area`:
   * `content` (default) is the page's body, as tall as what it shows, however long;
   * `viewport` is what the window shows; `page` the whole scrollable page, at least a window.
   */
  async screenshot(
    page: Page,
    name: string,
    options: { area?: "content" | "viewport" | "page" } = {},
  ): Promise<string> {
    if (!/^[a-z0-9-]{1,60}$/.test(name)) throw new Error(`bad screenshot name ${name}`);
    this.#shots++;
    const path = `${this.artifactsDir}/${String(this.#shots).padStart(2, "0")}-${name}.png`;
    const area = options.area ?? "content";
    if (area === "content") {
      await page.locator("body").screenshot({ path, animations: "disabled" });
    } else {
      await page.screenshot({ path, fullPage: area === "page", animations: "disabled" });
    }
    return path;
  }

  /** Returns the console problems so far and forgets them (after a step that expects some). */
  takeProblems(): ConsoleProblem[] {
    return this.consoleProblems.splice(0);
  }

  /** The console problems so far, one per line, for an assertion message. */
  describeProblems(): string {
    return this.consoleProblems.map((p) => `${p.kind} on ${p.page}: ${p.text}`).join("\n");
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.browser.close().catch(() => {});
  }

  async #newContext(): Promise<BrowserContext> {
    const context = await this.browser.newContext({
      viewport: { width: 1280, height: 800 },
      deviceScaleFactor: 1,
      ignoreHTTPSErrors: this.options.ignoreHttpsErrors ?? false,
    });
    context.setDefaultTimeout(15_000);
    // Runs before the page's own scripts and outside its CSP (it is injected by the debugger), so
    // a violation is reported even when the page reports nothing itself.
    await context.addInitScript({ content: REPORT_CSP_VIOLATIONS });
    context.on("page", (page) => this.#watch(page));
    return context;
  }

  #watch(page: Page): void {
    const where = () => {
      try {
        return new URL(page.url()).pathname;
      } catch {
        return page.url();
      }
    };
    page.on("console", (message) => {
      const type = message.type();
      if (type !== "error" && type !== "warning") return;
      // "Failed to load resource" names no URL in its text; its location does.
      const from = withoutQuery(message.location().url);
      const text = from && !message.text().includes(from)
        ? `${message.text()} (${from})`
        : message.text();
      const csp = /Content Security Policy|CSP violation/i.test(text);
      this.consoleProblems.push({
        page: where(),
        kind: csp ? "csp" : type === "error" ? "console.error" : "console.warning",
        text,
      });
    });
    page.on("request", (request) => {
      const url = new URL(request.url());
      if (url.protocol === "http:" || url.protocol === "https:") {
        this.requestedOrigins.add(url.origin);
      }
    });
    page.on("pageerror", (error) => {
      this.consoleProblems.push({ page: where(), kind: "pageerror", text: String(error) });
    });
  }
}

/** A URL without its query: a one-time token in it stays out of test output. */
function withoutQuery(url: string): string {
  const q = url.indexOf("?");
  return q < 0 ? url : `${url.slice(0, q)}?…`;
}

/** {@link UiBrowser.launch}. */
export function launchBrowser(options: LaunchOptions): Promise<UiBrowser> {
  return UiBrowser.launch(options);
}

/**
 * Waits until an element matching `selector` contains `text` (a substring or a pattern) and
 * returns its text. Polls in the page, so live updates are seen without a reload.
 */
export async function waitForText(
  page: Page,
  selector: string,
  text: string | RegExp,
  timeoutMs = 15_000,
): Promise<string> {
  const locator = page.locator(selector).filter({ hasText: text }).first();
  try {
    await locator.waitFor({ state: "visible", timeout: timeoutMs });
  } catch (error) {
    const seen = await page.locator(selector).allTextContents().catch(() => []);
    throw new Error(
      `no ${selector} with ${String(text)} within ${timeoutMs} ms on ${page.url()}; ` +
        `seen: ${JSON.stringify(seen.map((s) => s.trim().slice(0, 120)).slice(0, 10))}`,
      { cause: error },
    );
  }
  return (await locator.textContent()) ?? "";
}

/** Waits for `selector` to be attached and visible, and returns its locator. */
export async function waitForSelector(page: Page, selector: string, timeoutMs = 15_000) {
  const locator = page.locator(selector).first();
  await locator.waitFor({ state: "visible", timeout: timeoutMs });
  return locator;
}
