/** Small shared renderings: times, relative times, empty table rows. */
import { type Html, html } from "./html.ts";

/** "2026-01-02 03:04 UTC" (machine-readable in the datetime attribute). */
export function time(d: Date | null | undefined, empty = "—"): Html {
  if (!d) return html`<span class="muted">${empty}</span>`;
  const text = d.toISOString().slice(0, 16).replace("T", " ") + " UTC";
  return html`<time datetime="${d.toISOString()}">${text}</time>`;
}

/** "3 min ago", "in 2 h". */
export function relative(d: Date, now: Date): string {
  const s = Math.round((d.getTime() - now.getTime()) / 1000);
  const a = Math.abs(s);
  const text = a < 60
    ? `${a} s`
    : a < 3600
    ? `${Math.round(a / 60)} min`
    : a < 86400 * 2
    ? `${Math.round(a / 3600)} h`
    : `${Math.round(a / 86400)} days`;
  return s < 0 ? `${text} ago` : `in ${text}`;
}

/** A row saying the table is empty (removed by the script when a live row arrives). */
export function emptyRow(columns: number, text: string): Html {
  return html`
    <tr data-empty>
      <td colspan="${columns}" class="muted">${text}</td>
    </tr>
  `;
}
