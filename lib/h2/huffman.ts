/**
 * HPACK's Huffman code (RFC 7541 Appendix B). The code is canonical, so the 257 code lengths are
 * all it takes: codes are handed out in (length, symbol) order. Decoding walks a binary tree
 * built from them once; header blocks are small and rare next to the map traffic.
 */

/** Code length in bits of symbols 0..255 and EOS (256), in symbol order. */
const CODE_LENGTHS: readonly number[] = [
  // 0-31: control characters
  13,
  23,
  28,
  28,
  28,
  28,
  28,
  28,
  28,
  24,
  30,
  28,
  28,
  30,
  28,
  28,
  28,
  28,
  28,
  28,
  28,
  28,
  30,
  28,
  28,
  28,
  28,
  28,
  28,
  28,
  28,
  28,
  // 32-127: printable ASCII and DEL
  6,
  10,
  10,
  12,
  13,
  6,
  8,
  11,
  10,
  10,
  8,
  11,
  8,
  6,
  6,
  6,
  5,
  5,
  5,
  6,
  6,
  6,
  6,
  6,
  6,
  6,
  7,
  8,
  15,
  6,
  12,
  10,
  13,
  6,
  7,
  7,
  7,
  7,
  7,
  7,
  7,
  7,
  7,
  7,
  7,
  7,
  7,
  7,
  7,
  7,
  7,
  7,
  7,
  7,
  7,
  7,
  8,
  7,
  8,
  13,
  19,
  13,
  14,
  6,
  15,
  5,
  6,
  5,
  6,
  5,
  6,
  6,
  6,
  5,
  7,
  7,
  6,
  6,
  6,
  5,
  6,
  7,
  6,
  5,
  5,
  6,
  7,
  7,
  7,
  7,
  7,
  15,
  11,
  14,
  13,
  28,
  // 128-255
  20,
  22,
  20,
  20,
  22,
  22,
  22,
  23,
  22,
  23,
  23,
  23,
  23,
  23,
  24,
  23,
  24,
  24,
  22,
  23,
  24,
  23,
  23,
  23,
  23,
  21,
  22,
  23,
  22,
  23,
  23,
  24,
  22,
  21,
  20,
  22,
  22,
  23,
  23,
  21,
  23,
  22,
  22,
  24,
  21,
  22,
  23,
  23,
  21,
  21,
  22,
  21,
  23,
  22,
  23,
  23,
  20,
  22,
  22,
  22,
  23,
  22,
  22,
  23,
  26,
  26,
  20,
  19,
  22,
  23,
  22,
  25,
  26,
  26,
  26,
  27,
  27,
  26,
  24,
  25,
  19,
  21,
  26,
  27,
  27,
  26,
  27,
  24,
  21,
  21,
  26,
  26,
  28,
  27,
  27,
  27,
  20,
  24,
  20,
  21,
  22,
  21,
  21,
  23,
  22,
  22,
  25,
  25,
  24,
  24,
  26,
  23,
  26,
  27,
  26,
  26,
  27,
  27,
  27,
  27,
  27,
  28,
  27,
  27,
  27,
  27,
  27,
  26,
  // EOS
  30,
];

const EOS = 256;

/** The code of each symbol (right-aligned in `length` bits). */
export function huffmanCodes(): { code: number; length: number }[] {
  const order = CODE_LENGTHS.map((_, s) => s).sort((a, b) =>
    CODE_LENGTHS[a] - CODE_LENGTHS[b] || a - b
  );
  const out: { code: number; length: number }[] = new Array(CODE_LENGTHS.length);
  let code = 0;
  let prevLength = CODE_LENGTHS[order[0]];
  order.forEach((sym, i) => {
    const length = CODE_LENGTHS[sym];
    if (i > 0) code = (code + 1) * 2 ** (length - prevLength);
    prevLength = length;
    out[sym] = { code, length };
  });
  return out;
}

/**
 * The decoding tree as two arrays of child indices; a leaf holds -(symbol + 1). Node 0 is the
 * root. Built lazily, once per process.
 */
interface Tree {
  zero: Int32Array;
  one: Int32Array;
}

let tree: Tree | undefined;

function buildTree(): Tree {
  const zero: number[] = [0];
  const one: number[] = [0];
  for (const [sym, { code, length }] of huffmanCodes().entries()) {
    let node = 0;
    for (let bit = length - 1; bit >= 0; bit--) {
      const b = Math.floor(code / 2 ** bit) % 2;
      const side = b === 0 ? zero : one;
      if (bit === 0) {
        side[node] = -(sym + 1);
      } else {
        if (side[node] === 0) {
          side[node] = zero.length;
          zero.push(0);
          one.push(0);
        }
        node = side[node];
      }
    }
  }
  return { zero: Int32Array.from(zero), one: Int32Array.from(one) };
}

export class HuffmanError extends Error {
  override name = "HuffmanError";
}

/**
 * Decodes a Huffman-coded string literal. Refuses EOS inside the string and padding that is
 * longer than 7 bits or not all ones, as RFC 7541 §5.2 requires.
 */
export function huffmanDecode(input: Uint8Array): Uint8Array {
  tree ??= buildTree();
  const { zero, one } = tree;
  const out = new Uint8Array(Math.ceil(input.length * 8 / 5));
  let n = 0;
  let node = 0;
  let depth = 0; // bits since the last symbol
  let allOnes = true; // every bit since the last symbol was 1
  for (let i = 0; i < input.length; i++) {
    const byte = input[i];
    for (let bit = 7; bit >= 0; bit--) {
      const b = (byte >> bit) & 1;
      const next = b === 0 ? zero[node] : one[node];
      depth++;
      if (b === 0) allOnes = false;
      if (next < 0) {
        const sym = -next - 1;
        if (sym === EOS) throw new HuffmanError("EOS symbol inside a Huffman-coded string");
        out[n++] = sym;
        node = 0;
        depth = 0;
        allOnes = true;
      } else if (next === 0) {
        throw new HuffmanError("invalid Huffman code");
      } else {
        node = next;
      }
    }
  }
  if (depth > 7) throw new HuffmanError("Huffman padding longer than 7 bits");
  if (!allOnes) throw new HuffmanError("Huffman padding is not a prefix of EOS");
  return out.subarray(0, n);
}
