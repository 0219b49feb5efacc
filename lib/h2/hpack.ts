/**
 * HPACK (RFC 7541) for a server: a full decoder for request header blocks (static and dynamic
 * table, Huffman strings, table size updates) and a tiny encoder for responses that never adds
 * to the client's dynamic table (literals without indexing), so it keeps no state.
 */
import { huffmanDecode, HuffmanError } from "./huffman.ts";

/** A header block that cannot be decoded: a connection error (COMPRESSION_ERROR). */
export class HpackError extends Error {
  override name = "HpackError";
}

/** RFC 7541 Appendix A, 1-based (index 1 is ":authority"). */
const STATIC_TABLE: readonly (readonly [string, string])[] = [
  [":authority", ""],
  [":method", "GET"],
  [":method", "POST"],
  [":path", "/"],
  [":path", "/index.html"],
  [":scheme", "http"],
  [":scheme", "https"],
  [":status", "200"],
  [":status", "204"],
  [":status", "206"],
  [":status", "304"],
  [":status", "400"],
  [":status", "404"],
  [":status", "500"],
  ["accept-charset", ""],
  ["accept-encoding", "gzip, deflate"],
  ["accept-language", ""],
  ["accept-ranges", ""],
  ["accept", ""],
  ["access-control-allow-origin", ""],
  ["age", ""],
  ["allow", ""],
  ["authorization", ""],
  ["cache-control", ""],
  ["content-disposition", ""],
  ["content-encoding", ""],
  ["content-language", ""],
  ["content-length", ""],
  ["content-location", ""],
  ["content-range", ""],
  ["content-type", ""],
  ["cookie", ""],
  ["date", ""],
  ["etag", ""],
  ["expect", ""],
  ["expires", ""],
  ["from", ""],
  ["host", ""],
  ["if-match", ""],
  ["if-modified-since", ""],
  ["if-none-match", ""],
  ["if-range", ""],
  ["if-unmodified-since", ""],
  ["last-modified", ""],
  ["link", ""],
  ["location", ""],
  ["max-forwards", ""],
  ["proxy-authenticate", ""],
  ["proxy-authorization", ""],
  ["range", ""],
  ["referer", ""],
  ["refresh", ""],
  ["retry-after", ""],
  ["server", ""],
  ["set-cookie", ""],
  ["strict-transport-security", ""],
  ["transfer-encoding", ""],
  ["user-agent", ""],
  ["vary", ""],
  ["via", ""],
  ["www-authenticate", ""],
];

/** Per RFC 7541 §4.1: an entry's size is its name and value octets plus 32. */
const ENTRY_OVERHEAD = 32;

export type HeaderList = [name: string, value: string][];

const latin1 = new TextDecoder("latin1");

/** Decodes header blocks of one connection, keeping its dynamic table between blocks. */
export class HpackDecoder {
  /** Newest first. */
  readonly #dynamic: [string, string][] = [];
  #dynamicSize = 0;
  /** The size the encoder may use: our SETTINGS_HEADER_TABLE_SIZE. */
  readonly #maxAllowed: number;
  #maxSize: number;

  constructor(maxTableSize = 4096, readonly maxHeaderListSize = 64 << 10) {
    this.#maxAllowed = maxTableSize;
    this.#maxSize = maxTableSize;
  }

  /** The whole header block of one HEADERS (+ CONTINUATION) sequence. */
  decode(block: Uint8Array): HeaderList {
    const out: HeaderList = [];
    let listSize = 0;
    let pos = 0;
    let fieldSeen = false;
    const int = (prefixBits: number): number => {
      const [v, next] = decodeInt(block, pos, prefixBits);
      pos = next;
      return v;
    };
    const str = (): string => {
      if (pos >= block.length) throw new HpackError("header block ends inside a string");
      const huffman = (block[pos] & 0x80) !== 0;
      const len = int(7);
      if (pos + len > block.length) throw new HpackError("string runs past the header block");
      const raw = block.subarray(pos, pos + len);
      pos += len;
      if (!huffman) return latin1.decode(raw);
      try {
        return latin1.decode(huffmanDecode(raw));
      } catch (e) {
        if (e instanceof HuffmanError) throw new HpackError(e.message);
        throw e;
      }
    };
    const emit = (name: string, value: string) => {
      listSize += name.length + value.length + ENTRY_OVERHEAD;
      if (listSize > this.maxHeaderListSize) {
        throw new HpackError(`header list larger than ${this.maxHeaderListSize} bytes`);
      }
      out.push([name, value]);
    };
    while (pos < block.length) {
      const b = block[pos];
      if (b & 0x80) {
        // Indexed header field.
        const [name, value] = this.#entry(int(7));
        emit(name, value);
        fieldSeen = true;
      } else if (b & 0x40) {
        // Literal with incremental indexing.
        const index = int(6);
        const name = index === 0 ? str() : this.#entry(index)[0];
        const value = str();
        this.#add(name, value);
        emit(name, value);
        fieldSeen = true;
      } else if (b & 0x20) {
        // Dynamic table size update: only at the start of a block (§4.2).
        if (fieldSeen) throw new HpackError("table size update after a header field");
        const size = int(5);
        if (size > this.#maxAllowed) {
          throw new HpackError(`table size ${size} above the allowed ${this.#maxAllowed}`);
        }
        this.#maxSize = size;
        this.#evict();
      } else {
        // Literal without indexing (0000) or never indexed (0001).
        const index = int(4);
        const name = index === 0 ? str() : this.#entry(index)[0];
        emit(name, str());
        fieldSeen = true;
      }
    }
    return out;
  }

  #entry(index: number): readonly [string, string] {
    if (index === 0) throw new HpackError("header index 0");
    if (index <= STATIC_TABLE.length) return STATIC_TABLE[index - 1];
    const e = this.#dynamic[index - STATIC_TABLE.length - 1];
    if (!e) throw new HpackError(`header index ${index} is not in the table`);
    return e;
  }

  #add(name: string, value: string): void {
    this.#dynamic.unshift([name, value]);
    this.#dynamicSize += name.length + value.length + ENTRY_OVERHEAD;
    this.#evict();
  }

  #evict(): void {
    while (this.#dynamicSize > this.#maxSize && this.#dynamic.length > 0) {
      const [n, v] = this.#dynamic.pop()!;
      this.#dynamicSize -= n.length + v.length + ENTRY_OVERHEAD;
    }
  }
}

/** An HPACK integer with an N-bit prefix at `pos`: [value, position after it]. */
export function decodeInt(buf: Uint8Array, pos: number, prefixBits: number): [number, number] {
  if (pos >= buf.length) throw new HpackError("header block ends inside an integer");
  const max = (1 << prefixBits) - 1;
  let v = buf[pos++] & max;
  if (v < max) return [v, pos];
  // Five continuation bytes carry 35 bits, more than any value we accept; a sixth is refused
  // whatever its value, so zero-valued padding bytes cannot push the shift until 2 ** shift is
  // Infinity and the value NaN (which compares false against every limit).
  for (let shift = 0; shift <= 28; shift += 7) {
    if (pos >= buf.length) throw new HpackError("header block ends inside an integer");
    const b = buf[pos++];
    v += (b & 0x7f) * 2 ** shift;
    if (v > 0xffff_ffff) throw new HpackError("integer too large");
    if ((b & 0x80) === 0) return [v, pos];
  }
  throw new HpackError("integer encoding too long");
}

function encodeInt(out: number[], value: number, prefixBits: number, firstByteFlags: number) {
  const max = (1 << prefixBits) - 1;
  if (value < max) {
    out.push(firstByteFlags | value);
    return;
  }
  out.push(firstByteFlags | max);
  value -= max;
  while (value >= 0x80) {
    out.push((value % 0x80) | 0x80);
    value = Math.floor(value / 0x80);
  }
  out.push(value);
}

function encodeString(out: number[], text: string): void {
  const bytes = new TextEncoder().encode(text);
  encodeInt(out, bytes.length, 7, 0);
  for (const b of bytes) out.push(b);
}

/** Static indices of the `:status` values the table has. */
const STATUS_INDEX: Record<number, number> = {
  200: 8,
  204: 9,
  206: 10,
  304: 11,
  400: 12,
  404: 13,
  500: 14,
};

/**
 * A response header block: `:status` then the given headers (lower-case names), all as literals
 * without indexing so the client's table never changes.
 */
export function encodeResponseHeaders(
  status: number,
  headers: Record<string, string> = {},
): Uint8Array {
  const out: number[] = [];
  const index = STATUS_INDEX[status];
  if (index !== undefined) out.push(0x80 | index);
  else {
    encodeInt(out, 8, 4, 0x00); // literal without indexing, name = static 8 (":status")
    encodeString(out, String(status));
  }
  for (const [name, value] of Object.entries(headers)) {
    out.push(0x00);
    encodeString(out, name.toLowerCase());
    encodeString(out, value);
  }
  return Uint8Array.from(out);
}
