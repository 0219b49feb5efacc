/**
 * A minimal WebAssembly assembler: expressions are byte arrays built by the helpers below (each
 * leaves its value on the stack), and `wasmModule` lays out the sections. Only what
 * chacha_wasm.ts needs: i32/i64 arithmetic, loads and stores, blocks and loops, a few SIMD
 * (v128) instructions, functions without results and one exported memory.
 */

export type Code = number[];

/** Value types. */
export const I32 = 0x7f;
export const I64 = 0x7e;
export const V128 = 0x7b;

export function uleb(n: number): Code {
  const out: Code = [];
  do {
    let byte = n & 0x7f;
    n = Math.floor(n / 128);
    if (n !== 0) byte |= 0x80;
    out.push(byte);
  } while (n !== 0);
  return out;
}

export function sleb(value: number | bigint): Code {
  let n = BigInt(value);
  const out: Code = [];
  for (;;) {
    const byte = Number(n & 0x7fn);
    n >>= 7n;
    const done = (n === 0n && (byte & 0x40) === 0) || (n === -1n && (byte & 0x40) !== 0);
    out.push(done ? byte : byte | 0x80);
    if (done) return out;
  }
}

export function cat(...parts: (Code | number)[]): Code {
  const out: Code = [];
  for (const p of parts) {
    if (typeof p === "number") out.push(p);
    else for (const b of p) out.push(b);
  }
  return out;
}

/** memarg with alignment hint 0 (always valid; unaligned accesses are allowed) and an offset. */
const mem = (offset: number): Code => [0, ...uleb(offset)];

export const get = (local: number): Code => [0x20, ...uleb(local)];
export const set = (local: number, value: Code): Code => cat(value, 0x21, uleb(local));
export const tee = (local: number, value: Code): Code => cat(value, 0x22, uleb(local));
export const call = (func: number, ...args: Code[]): Code => cat(...args, 0x10, uleb(func));

export const i32 = {
  const: (n: number): Code => [0x41, ...sleb(n | 0)],
  load: (addr: Code, offset = 0): Code => cat(addr, 0x28, mem(offset)),
  load8: (addr: Code, offset = 0): Code => cat(addr, 0x2d, mem(offset)),
  store8: (addr: Code, value: Code, offset = 0): Code => cat(addr, value, 0x3a, mem(offset)),
  eq: (a: Code, b: Code): Code => cat(a, b, 0x46),
  gtU: (a: Code, b: Code): Code => cat(a, b, 0x4b),
  geU: (a: Code, b: Code): Code => cat(a, b, 0x4f),
  add: (a: Code, b: Code): Code => cat(a, b, 0x6a),
  sub: (a: Code, b: Code): Code => cat(a, b, 0x6b),
  and: (a: Code, b: Code): Code => cat(a, b, 0x71),
  xor: (a: Code, b: Code): Code => cat(a, b, 0x73),
  /** a < b ? a : b (unsigned). */
  minU: (a: Code, b: Code, ta: number, tb: number): Code =>
    cat(tee(ta, a), tee(tb, b), get(ta), get(tb), 0x49, 0x1b),
};

export const i64 = {
  const: (n: number | bigint): Code => [0x42, ...sleb(n)],
  load32: (addr: Code, offset = 0): Code => cat(addr, 0x35, mem(offset)),
  store: (addr: Code, value: Code, offset = 0): Code => cat(addr, value, 0x37, mem(offset)),
  store32: (addr: Code, value: Code, offset = 0): Code => cat(addr, value, 0x3e, mem(offset)),
  add: (a: Code, b: Code): Code => cat(a, b, 0x7c),
  sub: (a: Code, b: Code): Code => cat(a, b, 0x7d),
  mul: (a: Code, b: Code): Code => cat(a, b, 0x7e),
  and: (a: Code, b: Code): Code => cat(a, b, 0x83),
  or: (a: Code, b: Code): Code => cat(a, b, 0x84),
  xor: (a: Code, b: Code): Code => cat(a, b, 0x85),
  shl: (a: Code, b: Code): Code => cat(a, b, 0x86),
  shrS: (a: Code, b: Code): Code => cat(a, b, 0x87),
  shrU: (a: Code, b: Code): Code => cat(a, b, 0x88),
  extendU: (a: Code): Code => cat(a, 0xad),
};

const simd = (op: number): Code => [0xfd, ...uleb(op)];

export const v128 = {
  load: (addr: Code, offset = 0): Code => cat(addr, simd(0x00), mem(offset)),
  store: (addr: Code, value: Code, offset = 0): Code => cat(addr, value, simd(0x0b), mem(offset)),
  /** Four i32 lanes. */
  const: (lanes: [number, number, number, number]): Code => {
    const bytes = new Uint8Array(new Uint32Array(lanes).buffer);
    return cat(simd(0x0c), [...bytes]);
  },
  /** Picks 16 bytes of a‖b by index (0-15 from a, 16-31 from b). */
  shuffle: (a: Code, b: Code, lanes: number[]): Code => cat(a, b, simd(0x0d), lanes),
  splat: (a: Code): Code => cat(a, simd(0x11)),
  or: (a: Code, b: Code): Code => cat(a, b, simd(0x50)),
  xor: (a: Code, b: Code): Code => cat(a, b, simd(0x51)),
  shl: (a: Code, n: Code): Code => cat(a, n, simd(0xab)),
  shrU: (a: Code, n: Code): Code => cat(a, n, simd(0xad)),
  add: (a: Code, b: Code): Code => cat(a, b, simd(0xae)),
};

/** Structured control: `depth` counts enclosing blocks/loops from the innermost (0). */
export const block = (...body: Code[]): Code => cat(0x02, 0x40, ...body, 0x0b);
export const loop = (...body: Code[]): Code => cat(0x03, 0x40, ...body, 0x0b);
export const ifThen = (cond: Code, ...body: Code[]): Code => cat(cond, 0x04, 0x40, ...body, 0x0b);
export const br = (depth: number): Code => [0x0c, ...uleb(depth)];
export const brIf = (depth: number, cond: Code): Code => cat(cond, 0x0d, uleb(depth));

export interface WasmFunction {
  params: number[];
  /** Extra locals by type, after the params. */
  locals: number[];
  body: Code;
  export?: string;
}

function section(id: number, content: Code): Code {
  return cat(id, uleb(content.length), content);
}

function vec(items: Code[]): Code {
  return cat(uleb(items.length), ...items);
}

function name(s: string): Code {
  const bytes = [...new TextEncoder().encode(s)];
  return cat(uleb(bytes.length), bytes);
}

/** A module of `funcs` (no results) and one memory of `pages` 64 KiB pages, exported as "memory". */
export function wasmModule(funcs: WasmFunction[], pages: number): Uint8Array<ArrayBuffer> {
  const types = funcs.map((f) => cat(0x60, vec(f.params.map((t) => [t])), vec([])));
  const exports: Code[] = [cat(name("memory"), 0x02, 0)];
  funcs.forEach((f, i) => {
    if (f.export) exports.push(cat(name(f.export), 0x00, uleb(i)));
  });
  const bodies = funcs.map((f) => {
    // Locals as runs of one type, in order.
    const runs: Code[] = [];
    for (let i = 0; i < f.locals.length;) {
      let j = i;
      while (j < f.locals.length && f.locals[j] === f.locals[i]) j++;
      runs.push(cat(uleb(j - i), f.locals[i]));
      i = j;
    }
    const code = cat(vec(runs), f.body, 0x0b);
    return cat(uleb(code.length), code);
  });
  return new Uint8Array(cat(
    [0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00],
    section(1, vec(types)),
    section(3, vec(funcs.map((_, i) => uleb(i)))),
    section(5, vec([cat(0x00, uleb(pages))])),
    section(7, vec(exports)),
    section(10, vec(bodies)),
  ));
}
