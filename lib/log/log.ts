/**
 * A small structured logger: level filter, text or JSON lines on stderr, child loggers with
 * fields. Created once in main.ts and passed to whoever logs; never logs secrets (callers pass
 * key prefixes, not keys).
 */

export type Level = "trace" | "debug" | "info" | "warn" | "error";
const RANK: Record<Level, number> = { trace: 0, debug: 1, info: 2, warn: 3, error: 4 };

export type Fields = Record<string, unknown>;

export interface Logger {
  trace(msg: string, fields?: Fields): void;
  debug(msg: string, fields?: Fields): void;
  info(msg: string, fields?: Fields): void;
  warn(msg: string, fields?: Fields): void;
  error(msg: string, fields?: Fields): void;
  child(fields: Fields): Logger;
  enabled(level: Level): boolean;
}

export interface LoggerOptions {
  level?: Level;
  format?: "text" | "json";
  /** Where lines go; stderr by default. */
  write?: (line: string) => void;
  now?: () => Date;
}

function render(v: unknown): string {
  if (v instanceof Error) return JSON.stringify(v.message);
  if (typeof v === "string") return /^[\w.:/@+-]+$/.test(v) ? v : JSON.stringify(v);
  return JSON.stringify(v) ?? String(v);
}

export function createLogger(opts: LoggerOptions = {}, base: Fields = {}): Logger {
  const min = RANK[opts.level ?? "info"];
  const format = opts.format ?? "text";
  const encoder = new TextEncoder();
  const write = opts.write ??
    ((line: string) => Deno.stderr.writeSync(encoder.encode(line + "\n")));
  const now = opts.now ?? (() => new Date());

  const emit = (level: Level, msg: string, fields?: Fields) => {
    if (RANK[level] < min) return;
    const all = fields ? { ...base, ...fields } : base;
    if (format === "json") {
      const plain: Fields = {};
      for (const [k, v] of Object.entries(all)) plain[k] = v instanceof Error ? v.message : v;
      write(JSON.stringify({ time: now().toISOString(), level, msg, ...plain }));
    } else {
      const kv = Object.entries(all).map(([k, v]) => ` ${k}=${render(v)}`).join("");
      write(`${now().toISOString()} ${level.toUpperCase().padEnd(5)} ${msg}${kv}`);
    }
  };

  return {
    trace: (m, f) => emit("trace", m, f),
    debug: (m, f) => emit("debug", m, f),
    info: (m, f) => emit("info", m, f),
    warn: (m, f) => emit("warn", m, f),
    error: (m, f) => emit("error", m, f),
    child: (fields) => createLogger(opts, { ...base, ...fields }),
    enabled: (level) => RANK[level] >= min,
  };
}

/** A logger that drops everything (tests, benchmarks). */
export function silentLogger(): Logger {
  return createLogger({ level: "error", write: () => {} });
}
