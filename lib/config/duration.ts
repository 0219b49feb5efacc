/** Go-style durations ("90s", "1h30m", "500ms", "0") as headscale's config uses them. */

const UNIT_MS: Record<string, number> = {
  ns: 1e-6,
  us: 1e-3,
  "µs": 1e-3,
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
  d: 86_400_000,
};

/** Parses a duration into milliseconds; a bare number is seconds, as viper reads it. */
export function parseDuration(text: string | number): number {
  if (typeof text === "number") {
    if (!Number.isFinite(text) || text < 0) throw new Error(`invalid duration ${text}`);
    return text * 1000;
  }
  const s = text.trim();
  if (s === "0" || s === "") return 0;
  if (/^\d+(\.\d+)?$/.test(s)) return Number(s) * 1000;
  const part = /(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h|d)/y;
  let total = 0;
  let pos = 0;
  while (pos < s.length) {
    part.lastIndex = pos;
    const m = part.exec(s);
    if (!m) throw new Error(`invalid duration "${text}" (use forms like 30s, 15m, 2h, 1h30m)`);
    total += Number(m[1]) * UNIT_MS[m[2]];
    pos = part.lastIndex;
  }
  return total;
}

/** Formats milliseconds the way Go prints a time.Duration (e.g. "1h30m0s"). */
export function formatDuration(ms: number): string {
  if (ms === 0) return "0s";
  const h = Math.floor(ms / 3_600_000);
  const m = Math.floor((ms % 3_600_000) / 60_000);
  const s = (ms % 60_000) / 1000;
  return `${h ? `${h}h` : ""}${h || m ? `${m}m` : ""}${s}s`;
}
