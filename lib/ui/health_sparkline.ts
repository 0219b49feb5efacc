/**
 * A sparkline as inline SVG, drawn on the server: no script, and only presentation attributes
 * (stroke, fill), which a CSP without 'unsafe-inline' styles allows (it blocks `style`
 * attributes and elements, not SVG attributes).
 */
import { type Html, html } from "./html.ts";
import type { Point } from "./health_sampler.ts";

export interface SparklineOptions {
  /** What the chart shows, for screen readers and the tooltip. */
  label: string;
  /** The time span the x axis covers, ending at `now`. */
  windowMs: number;
  now: number;
  width?: number;
  height?: number;
}

export function sparkline(points: readonly Point[], o: SparklineOptions): Html {
  const w = o.width ?? 240, h = o.height ?? 48, pad = 2;
  const max = Math.max(1, ...points.map((p) => p.v));
  const last = points.at(-1);
  const summary = last
    ? `${o.label}: ${last.v} now, at most ${max} in the last ${minutes(o.windowMs)}`
    : `${o.label}: no samples yet`;
  const x = (t: number) => {
    const f = 1 - Math.min(1, Math.max(0, (o.now - t) / o.windowMs));
    return round(pad + f * (w - 2 * pad));
  };
  const y = (v: number) => round(h - pad - (v / max) * (h - 2 * pad));
  const coords = points.map((p) => `${x(p.t)},${y(p.v)}`).join(" ");
  return html`
    <svg class="sparkline" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${w} ${h}"
      width="${w}" height="${h}" role="img"
      aria-label="${summary}"><title>${summary}</title><line x1="${pad}" y1="${h - pad}" x2="${w -
        pad}" y2="${h -
        pad}" stroke="currentColor" stroke-opacity="0.3" stroke-width="1"/>${points.length > 1
        ? html`
          <polyline fill="none" stroke="currentColor" stroke-width="1.5" stroke-linejoin="round"
            points="${coords}" />
        `
        : last
        ? html`
          <circle cx="${x(last.t)}" cy="${y(last.v)}" r="2" fill="currentColor" />
        `
        : null}</svg>
  `;
}

function round(n: number): number {
  return Math.round(n * 10) / 10;
}

function minutes(ms: number): string {
  const m = Math.round(ms / 60_000);
  return m === 60 ? "hour" : `${m} minutes`;
}
