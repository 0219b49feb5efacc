/**
 * Key lifetimes as headscale's CLI reads them: Prometheus-style durations ("90d", "1w", "1h30m",
 * "500ms"), units from largest to smallest, each at most once, whole numbers only.
 */

const UNITS: [string, number][] = [
  ["y", 365 * 86_400_000],
  ["w", 7 * 86_400_000],
  ["d", 86_400_000],
  ["h", 3_600_000],
  ["m", 60_000],
  ["s", 1000],
  ["ms", 1],
];

const PATTERN = new RegExp(
  "^" + UNITS.map(([unit]) => `(?:(\\d+)${unit})?`).join("") + "$",
);

/** Milliseconds in `text`; throws an Error naming the accepted forms when it is not a duration. */
export function parseKeyDuration(text: string): number {
  const s = text.trim();
  if (s === "0") return 0;
  const m = s === "" ? null : PATTERN.exec(s);
  if (!m) {
    throw new Error(`"${text}" is not a duration (use forms like 30m, 1h, 90d, 1w, 1h30m)`);
  }
  let total = 0;
  UNITS.forEach(([, ms], i) => {
    if (m[i + 1] !== undefined) total += Number(m[i + 1]) * ms;
  });
  if (!Number.isSafeInteger(total)) throw new Error(`duration "${text}" is too long`);
  return total;
}
