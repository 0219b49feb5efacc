/**
 * HTML for the admin UI: a tagged template that escapes every interpolated value unless it is
 * already `Html` (built by this template or `raw`). Pages are assembled from `Html` pieces only,
 * so user-controlled text (hostnames, user names, policy errors) can never become markup.
 */

/** Markup that is safe to emit as is. */
export class Html {
  constructor(readonly value: string) {}
  toString(): string {
    return this.value;
  }
}

export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** Interpolated values: Html as is; arrays joined; null/undefined/false as nothing; else escaped. */
export type HtmlValue = Html | string | number | boolean | null | undefined | HtmlValue[];

function render(value: HtmlValue): string {
  if (value === null || value === undefined || value === false) return "";
  if (value instanceof Html) return value.value;
  if (Array.isArray(value)) return value.map(render).join("");
  return escapeHtml(String(value));
}

export function html(strings: TemplateStringsArray, ...values: HtmlValue[]): Html {
  let out = strings[0];
  for (let i = 0; i < values.length; i++) out += render(values[i]) + strings[i + 1];
  return new Html(out);
}

/** Trusted markup from this codebase (never from input). */
export function raw(markup: string): Html {
  return new Html(markup);
}
