/**
 * How results reach the user: plain tables (headscale's columns, " | " between them, colour only
 * on a terminal) by default, or JSON / JSON lines / YAML of protojson data with -o.
 */
import { type DescMessage, type MessageShape, toJson } from "@bufbuild/protobuf";
import { type Timestamp, timestampDate } from "@bufbuild/protobuf/wkt";
import { stringify as toYaml } from "yaml";

export type OutputFormat = "" | "json" | "json-line" | "yaml";

export function parseOutputFormat(text: string | undefined): OutputFormat {
  if (text === undefined || text === "") return "";
  if (text === "json" || text === "json-line" || text === "yaml") return text;
  throw new Error(`unknown output format "${text}" (use json, json-line or yaml)`);
}

/** Machine-readable rendering; JSON is tab-indented as headscale prints it. */
export function serialize(data: unknown, format: Exclude<OutputFormat, "">): string {
  switch (format) {
    case "json":
      return JSON.stringify(data, null, "\t");
    case "json-line":
      return JSON.stringify(data);
    case "yaml":
      return toYaml(data).trimEnd();
  }
}

/** The one error line (or object) for stderr, in the requested format. */
export function formatError(message: string, details: string[], format: OutputFormat): string {
  if (format === "") {
    return [`Error: ${message}`, ...details.map((d) => `  - ${d}`)].join("\n");
  }
  return serialize(details.length ? { error: message, details } : { error: message }, format);
}

/** A message as the REST API shows it: protojson, lowerCamelCase, every field present. */
export function messageJson<Desc extends DescMessage>(
  schema: Desc,
  message: MessageShape<Desc>,
): unknown {
  return toJson(schema, message, { alwaysEmitImplicit: true });
}

export interface Style {
  good(text: string): string;
  bad(text: string): string;
  bold(text: string): string;
}

export const plainStyle: Style = { good: (t) => t, bad: (t) => t, bold: (t) => t };

export const ansiStyle: Style = {
  good: (t) => `\x1b[92m${t}\x1b[0m`,
  bad: (t) => `\x1b[91m${t}\x1b[0m`,
  bold: (t) => `\x1b[1m${t}\x1b[0m`,
};

/** Colour only for a terminal, and never when NO_COLOR is set (no-color.org). */
export function chooseStyle(isTerminal: boolean, env: Record<string, string | undefined>): Style {
  return isTerminal && !env.NO_COLOR && env.TERM !== "dumb" ? ansiStyle : plainStyle;
}

// deno-lint-ignore no-control-regex
const ANSI = /\x1b\[[0-9;]*m/g;

function visibleWidth(text: string): number {
  return [...text.replace(ANSI, "")].length;
}

/**
 * Renders rows (the first is the header) as aligned columns separated by " | ". A cell with
 * newlines spans several lines, as pterm draws headscale's multi-value cells (tags, IPs).
 */
export function renderTable(rows: string[][], style: Style = plainStyle): string {
  if (rows.length === 0) return "";
  const columns = Math.max(...rows.map((r) => r.length));
  const cells = rows.map((r) =>
    Array.from({ length: columns }, (_, i) => (r[i] ?? "").split("\n"))
  );
  const widths = Array.from(
    { length: columns },
    (_, i) => Math.max(...cells.map((r) => Math.max(...r[i].map(visibleWidth)))),
  );
  const lines: string[] = [];
  cells.forEach((row, rowIndex) => {
    const height = Math.max(...row.map((c) => c.length));
    for (let l = 0; l < height; l++) {
      const parts = row.map((cell, i) => {
        const text = cell[l] ?? "";
        const padded = text + " ".repeat(widths[i] - visibleWidth(text));
        return rowIndex === 0 ? style.bold(padded) : padded;
      });
      lines.push(parts.join(" | ").trimEnd());
    }
  });
  return lines.join("\n");
}

/** headscale's table time format ("2006-01-02 15:04:05"), in UTC as protobuf times are. */
export function formatDate(date: Date): string {
  return date.toISOString().slice(0, 19).replace("T", " ");
}

export function formatTimestamp(ts: Timestamp | undefined): string {
  return ts ? formatDate(timestampDate(ts)) : "";
}

/** An expiry, green while in the future and red once past ("-" when there is none). */
export function formatExpiry(ts: Timestamp | undefined, now: Date, style: Style): string {
  if (!ts) return "-";
  const date = timestampDate(ts);
  const text = formatDate(date);
  return date.getTime() > now.getTime() ? style.good(text) : style.bad(text);
}

const KEY_TEXT = /^(?:mkey|nodekey|discokey):([0-9a-f]{64})$/;

/**
 * Tailscale's short form of a public key ("[" + first 5 base64 chars + "]"), as headscale's node
 * table shows machine and node keys; empty for a missing, zero or malformed key.
 */
export function shortKey(text: string): string {
  const m = KEY_TEXT.exec(text);
  if (!m || /^0+$/.test(m[1])) return "";
  const bytes = new Uint8Array(32);
  for (let i = 0; i < 32; i++) bytes[i] = parseInt(m[1].slice(i * 2, i * 2 + 2), 16);
  return `[${btoa(String.fromCharCode(...bytes)).slice(0, 5)}]`;
}
