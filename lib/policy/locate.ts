/**
 * Where in the policy text a refusal points: the line (and column) of the offending key or
 * value, for editors that show errors in place. The parser's messages name the offending part
 * (a quoted value, a path like `acls[2]` or `tagOwners["tag:a"]`, a test's number); this maps
 * them back onto the source by re-reading it with positions. HuJSON syntax errors carry their
 * line and column already. A message that names nothing findable gets no position.
 */
import { parseHuJSON } from "./hujson.ts";

export interface PolicyProblem {
  message: string;
  /** 1-based; absent when the message names nothing in the text. */
  line?: number;
  column?: number;
}

interface Entry {
  path: (string | number)[];
  /** Keys compared case-insensitively (the parser reads fields that way). */
  lowerPath: string[];
  key?: string;
  /** The value when it is a string. */
  text?: string;
  start: number;
  keyAt?: number;
}

/** Splits a refusal into its problems (a test run reports one per line) and places each. */
export function locatePolicyErrors(text: string, message: string): PolicyProblem[] {
  const lines = message.split("\n").map((l) => l.trim()).filter((l) => l !== "");
  // "the policy's tests failed:" / "test(s) failed:" heads the list of failures.
  const problems = lines.length > 1 && lines[0].endsWith("failed:")
    ? lines.slice(1).map((l) => `${lines[0]} ${l}`)
    : [lines.join(" ")];
  const entries = indexEntries(text);
  return problems.map((m) => ({ message: m, ...locate(text, entries, m) }));
}

/** 1-based line and column of an offset. */
export function lineColumn(text: string, offset: number): { line: number; column: number } {
  let line = 1, lineStart = 0;
  for (let i = 0; i < offset && i < text.length; i++) {
    if (text.charCodeAt(i) === 10) {
      line++;
      lineStart = i + 1;
    }
  }
  return { line, column: offset - lineStart + 1 };
}

function indexEntries(text: string): Entry[] {
  const entries: Entry[] = [];
  try {
    parseHuJSON(text, (path, value, at) => {
      const last = path[path.length - 1];
      entries.push({
        path: [...path],
        lowerPath: path.map((p) => String(p).toLowerCase()),
        key: typeof last === "string" ? last : undefined,
        text: typeof value === "string" ? value : undefined,
        start: at.start,
        keyAt: at.keyAt,
      });
    });
  } catch { /* a syntax error: its message carries the position */ }
  // Document order: the visitor reports innermost values first.
  return entries.sort((a, b) => (a.keyAt ?? a.start) - (b.keyAt ?? b.start));
}

function locate(
  text: string,
  entries: Entry[],
  message: string,
): { line?: number; column?: number } {
  const syntax = /at line (\d+), column (\d+)/.exec(message);
  if (syntax) return { line: Number(syntax[1]), column: Number(syntax[2]) };
  const scope = scopeOf(message, entries);
  const inScope = scope ? entries.filter((e) => startsWith(e.lowerPath, scope)) : entries;
  const at = findQuoted(message, inScope) ?? findDomain(message, inScope) ??
    inScope.find((e) => scope && e.lowerPath.length === scope.length)?.start;
  if (!at) return {};
  return lineColumn(text, at);
}

function startsWith(path: string[], prefix: string[]): boolean {
  return prefix.length <= path.length && prefix.every((p, i) => path[i] === p);
}

/** The deepest path the message names that exists in the text (e.g. `acls[2]`, `test 0`). */
function scopeOf(message: string, entries: Entry[]): string[] | null {
  const candidates: string[][] = [];
  const label = /^(?:.*failed: )?(test|sshTest) (\d+)\b/.exec(message);
  if (label) candidates.push([label[1] === "test" ? "tests" : "sshtests", label[2]]);
  const pathRe = /\b([A-Za-z]+)((?:\[(?:\d+|"(?:[^"\\]|\\.)*")\]|\.[A-Za-z]+)+)/g;
  for (const m of message.matchAll(pathRe)) {
    const path = [m[1].toLowerCase()];
    for (const step of m[2].matchAll(/\[(\d+)\]|\[("(?:[^"\\]|\\.)*")\]|\.([A-Za-z]+)/g)) {
      path.push(step[1] ?? (step[2] ? JSON.parse(step[2]) as string : step[3]).toLowerCase());
    }
    candidates.push(path);
  }
  let best: string[] | null = null;
  for (const c of candidates) {
    // The longest prefix of the named path that the text has.
    for (let n = c.length; n > 0; n--) {
      const p = c.slice(0, n);
      if (entries.some((e) => e.lowerPath.length === n && startsWith(e.lowerPath, p))) {
        if (!best || n > best.length) best = p;
        break;
      }
    }
  }
  return best;
}

/** The first key or string value equal to a quoted string of the message (then containing it). */
function findQuoted(message: string, entries: Entry[]): number | undefined {
  const quoted: string[] = [];
  for (const m of message.matchAll(/"(?:[^"\\]|\\.)*"/g)) {
    try {
      const q = JSON.parse(m[0]);
      if (typeof q === "string" && q !== "") quoted.push(q);
    } catch { /* not JSON */ }
  }
  // The last quoted string is usually the offending one ("…[\"tag:a\"]: invalid owner \"x\"").
  quoted.reverse();
  for (const q of quoted) {
    for (const e of entries) {
      if (e.key === q && e.keyAt !== undefined) return e.keyAt;
      if (e.text === q) return e.start;
    }
  }
  for (const q of quoted) {
    const e = entries.find((e) => e.text?.includes(q));
    if (e) return e.start;
  }
  return undefined;
}

/** "example.com is not associated with this Tailnet…" names a domain of `*@example.com`. */
function findDomain(message: string, entries: Entry[]): number | undefined {
  const m = /(\S+) is not associated with this Tailnet/.exec(message);
  if (!m) return undefined;
  return entries.find((e) => e.text?.endsWith(`@${m[1]}`))?.start;
}
