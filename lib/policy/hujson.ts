/**
 * HuJSON ("human JSON"): JSON plus `//` and `/* *\/` comments and trailing commas, the format
 * of Tailscale policy files. A small recursive-descent parser; errors carry line and column.
 */

export class HuJSONError extends Error {
  constructor(message: string, readonly line: number, readonly column: number) {
    super(`${message} at line ${line}, column ${column}`);
    this.name = "HuJSONError";
  }
}

export type JSONValue = null | boolean | number | string | JSONValue[] | { [k: string]: JSONValue };

/** Nesting deeper than this is refused (a policy never needs it; it keeps the stack safe). */
const MAX_DEPTH = 200;

/** A path into a document: object keys and array indexes from the root. */
export type HuJSONPath = readonly (string | number)[];

/**
 * Called for every value once it is parsed, innermost first: where it sits in the document
 * (offsets into the text; `keyAt` is the offset of its key's opening quote in an object).
 * The path array is reused: copy it to keep it.
 */
export type HuJSONVisitor = (
  path: HuJSONPath,
  value: JSONValue,
  at: { start: number; end: number; keyAt?: number },
) => void;

export function parseHuJSON(text: string, visit?: HuJSONVisitor): JSONValue {
  const p = new Parser(text, visit);
  p.skipSpace();
  const start = p.offset;
  const v = p.value(0);
  visit?.([], v, { start, end: p.offset });
  p.skipSpace();
  if (!p.atEnd()) p.fail("unexpected text after the top-level value");
  return v;
}

class Parser {
  private pos = 0;
  private readonly path: (string | number)[] = [];
  constructor(private readonly s: string, private readonly visit?: HuJSONVisitor) {}

  get offset(): number {
    return this.pos;
  }

  atEnd(): boolean {
    return this.pos >= this.s.length;
  }

  fail(message: string, at = this.pos): never {
    let line = 1, col = 1;
    for (let i = 0; i < at && i < this.s.length; i++) {
      if (this.s.charCodeAt(i) === 10) {
        line++;
        col = 1;
      } else col++;
    }
    throw new HuJSONError(message, line, col);
  }

  skipSpace(): void {
    const s = this.s;
    while (this.pos < s.length) {
      const c = s[this.pos];
      if (c === " " || c === "\t" || c === "\n" || c === "\r" || c === "\uFEFF") {
        this.pos++;
      } else if (c === "/" && s[this.pos + 1] === "/") {
        const end = s.indexOf("\n", this.pos);
        this.pos = end < 0 ? s.length : end + 1;
      } else if (c === "/" && s[this.pos + 1] === "*") {
        const end = s.indexOf("*/", this.pos + 2);
        if (end < 0) this.fail("unterminated block comment");
        this.pos = end + 2;
      } else break;
    }
  }

  value(depth: number): JSONValue {
    if (depth > MAX_DEPTH) this.fail("value nested too deeply");
    const c = this.s[this.pos];
    if (c === "{") return this.object(depth);
    if (c === "[") return this.array(depth);
    if (c === '"') return this.string();
    if (c === "-" || (c >= "0" && c <= "9")) return this.number();
    for (const [word, v] of [["true", true], ["false", false], ["null", null]] as const) {
      if (this.s.startsWith(word, this.pos)) {
        this.pos += word.length;
        return v;
      }
    }
    if (c === undefined) this.fail("unexpected end of input");
    this.fail(`unexpected character ${JSON.stringify(c)}`);
  }

  private object(depth: number): JSONValue {
    const out: { [k: string]: JSONValue } = Object.create(null);
    const start = this.pos;
    this.pos++;
    this.skipSpace();
    while (this.s[this.pos] !== "}") {
      if (this.s[this.pos] !== '"') this.fail("expected a quoted object key");
      const keyAt = this.pos;
      const key = this.string();
      if (Object.prototype.hasOwnProperty.call(out, key)) {
        this.fail(`duplicate object key ${JSON.stringify(key)}`, keyAt);
      }
      this.skipSpace();
      if (this.s[this.pos] !== ":") this.fail("expected ':' after object key");
      this.pos++;
      this.skipSpace();
      const valueAt = this.pos;
      this.path.push(key);
      const v = this.value(depth + 1);
      this.visit?.(this.path, v, { start: valueAt, end: this.pos, keyAt });
      this.path.pop();
      out[key] = v;
      this.skipSpace();
      if (this.s[this.pos] === ",") {
        this.pos++;
        this.skipSpace();
      } else if (this.s[this.pos] !== "}") {
        if (this.atEnd()) this.fail("unterminated object", start);
        this.fail("expected ',' or '}' in object");
      }
    }
    this.pos++;
    // Plain objects keep the usual prototype so callers can treat them as ordinary data.
    return Object.assign({}, out);
  }

  private array(depth: number): JSONValue {
    const out: JSONValue[] = [];
    const start = this.pos;
    this.pos++;
    this.skipSpace();
    while (this.s[this.pos] !== "]") {
      const valueAt = this.pos;
      this.path.push(out.length);
      const v = this.value(depth + 1);
      this.visit?.(this.path, v, { start: valueAt, end: this.pos });
      this.path.pop();
      out.push(v);
      this.skipSpace();
      if (this.s[this.pos] === ",") {
        this.pos++;
        this.skipSpace();
      } else if (this.s[this.pos] !== "]") {
        if (this.atEnd()) this.fail("unterminated array", start);
        this.fail("expected ',' or ']' in array");
      }
    }
    this.pos++;
    return out;
  }

  private string(): string {
    const s = this.s;
    const start = this.pos;
    let i = this.pos + 1;
    let out = "";
    let chunk = i;
    while (true) {
      if (i >= s.length) this.fail("unterminated string", start);
      const c = s.charCodeAt(i);
      if (c === 34) break;
      if (c < 0x20) this.fail("control character in string", i);
      if (c === 92) {
        out += s.slice(chunk, i);
        const e = s[i + 1];
        const simple: Record<string, string> = {
          '"': '"',
          "\\": "\\",
          "/": "/",
          b: "\b",
          f: "\f",
          n: "\n",
          r: "\r",
          t: "\t",
        };
        if (e in simple) {
          out += simple[e];
          i += 2;
        } else if (e === "u") {
          const hex = s.slice(i + 2, i + 6);
          if (!/^[0-9a-fA-F]{4}$/.test(hex)) this.fail("invalid \\u escape", i);
          out += String.fromCharCode(parseInt(hex, 16));
          i += 6;
        } else {
          this.fail("invalid escape in string", i);
        }
        chunk = i;
        continue;
      }
      i++;
    }
    out += s.slice(chunk, i);
    this.pos = i + 1;
    return out;
  }

  private number(): number {
    const m = /^-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?/.exec(this.s.slice(this.pos, this.pos + 400));
    if (!m) this.fail("invalid number");
    this.pos += m[0].length;
    return Number(m[0]);
  }
}
