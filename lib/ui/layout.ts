/** The page around every admin UI page: head, navigation, who is signed in, the flash message. */
import { type Html, html } from "./html.ts";
import type { Assets } from "./assets/mod.ts";
import type { Flash } from "./context.ts";

export interface NavEntry {
  label: string;
  /** Full path, base included. */
  href: string;
}

export interface LayoutOptions {
  title: string;
  body: Html;
  assets: Assets;
  base: string;
  nav: NavEntry[];
  /** The current request path, to mark its nav entry. */
  path: string;
  flash?: Flash;
  /** Signed in: name and the CSRF token for the sign-out form. */
  admin?: { displayName: string; csrfToken: string };
  /** URL of the Server-Sent Events the page listens to. */
  events?: string;
}

export function layout(o: LayoutOptions): Html {
  const current = (href: string) => o.path === href || o.path.startsWith(href + "/");
  return html`
    <!doctype html>
    <html lang="en">
      <head>
        <meta charset="utf-8">
        <meta name="viewport" content="width=device-width, initial-scale=1">
        <meta name="referrer" content="same-origin">
        <link rel="icon" href="data:,">
        <title>${o.title} · headscale-deno</title>
        <link rel="stylesheet" href="${o.assets.url("ui.css")}">
        <script src="${o.assets.url("ui.js")}" defer></script>
      </head>
      <body${o.events
        ? html`
          data-events="${o.events}"
        `
        : ""}>
        <a class="skip" href="#main">Skip to content</a>
        <header class="top">
    <a class="brand" href="${o.base}/">headscale-deno</a>
    ${o.admin
      ? html`
        <nav class="main" aria-label="Main">
          <ul>${o.nav.map((n) =>
            html`<li><a href="${n.href}"${
              current(n.href)
                ? html`
                  aria-current="page"
                `
                : ""
            }>${n.label}</a></li>`
          )}</ul>
        </nav>
        <div class="who"><span data-admin>${o.admin.displayName}</span>
        <form class="inline" method="post" action="${o.base}/signout">
        <input type="hidden" name="csrf" value="${o.admin.csrfToken}">
        <button type="submit">Sign out</button></form></div>
      `
      : ""}
        </header>
        <main id="main">
    <h1>${o.title}</h1>
    ${o.flash
      ? html`<div class="flash ${o.flash.kind}" role="${
        o.flash.kind === "error" ? "alert" : "status"
      }">${o.flash.text}</div>`
      : ""}
    ${o.body}
        </main>
        </body>
        </html>
  `;
}
