/**
 * HPACK (lib/h2/hpack.ts, lib/h2/huffman.ts): the RFC 7541 Appendix C examples, the errors a
 * hostile or broken header block must raise, and the response encoder round-tripping through
 * the decoder.
 */
import assert from "node:assert/strict";
import {
  decodeInt,
  encodeResponseHeaders,
  type HeaderList,
  HpackDecoder,
  HpackError,
} from "../lib/h2/hpack.ts";
import { huffmanCodes, huffmanDecode, HuffmanError } from "../lib/h2/huffman.ts";

/** Hex as the RFC prints it (groups of 4 digits), spaces ignored. */
function hex(text: string): Uint8Array {
  const clean = text.replace(/\s+/g, "");
  assert.equal(clean.length % 2, 0, "odd hex");
  const out = new Uint8Array(clean.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(clean.slice(i * 2, i * 2 + 2), 16);
  return out;
}

/** The entry at `index` (1-based, static then dynamic), read with an indexed representation. */
function entryAt(d: HpackDecoder, index: number): [string, string] {
  const block: number[] = [];
  if (index < 127) block.push(0x80 | index);
  else {
    block.push(0xff);
    let v = index - 127;
    while (v >= 0x80) {
      block.push((v & 0x7f) | 0x80);
      v >>= 7;
    }
    block.push(v);
  }
  const out = d.decode(Uint8Array.from(block));
  assert.equal(out.length, 1);
  return out[0];
}

/**
 * Asserts the dynamic table holds exactly `entries` (newest first): each is at index 62, 63, …
 * and the next index is past the table.
 */
function assertDynamicTable(d: HpackDecoder, entries: [string, string][]): void {
  entries.forEach((e, i) => assert.deepEqual(entryAt(d, 62 + i), e, `dynamic entry ${62 + i}`));
  assert.throws(() => entryAt(d, 62 + entries.length), HpackError);
}

function tableSize(entries: [string, string][]): number {
  return entries.reduce((n, [k, v]) => n + k.length + v.length + 32, 0);
}

// --- RFC 7541 C.1: integer representation

Deno.test("C.1 integers: 10 in a 5-bit prefix, 1337 in a 5-bit prefix, 42 at an octet boundary", () => {
  assert.deepEqual(decodeInt(hex("0a"), 0, 5), [10, 1]);
  assert.deepEqual(decodeInt(hex("1f9a0a"), 0, 5), [1337, 3]);
  assert.deepEqual(decodeInt(hex("2a"), 0, 8), [42, 1]);
  // The prefix ignores the flag bits above it.
  assert.deepEqual(decodeInt(hex("ea"), 0, 5), [10, 1]);
  // At an offset.
  assert.deepEqual(decodeInt(hex("00 1f9a0a"), 1, 5), [1337, 4]);
});

// --- RFC 7541 C.2: header field representations

Deno.test("C.2.1 literal with indexing adds custom-key: custom-header (size 55)", () => {
  const d = new HpackDecoder();
  const out = d.decode(hex("400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572"));
  assert.deepEqual(out, [["custom-key", "custom-header"]]);
  assert.equal(tableSize([["custom-key", "custom-header"]]), 55);
  assertDynamicTable(d, [["custom-key", "custom-header"]]);
});

Deno.test("C.2.2 literal without indexing (indexed name :path) leaves the table empty", () => {
  const d = new HpackDecoder();
  assert.deepEqual(d.decode(hex("040c 2f73 616d 706c 652f 7061 7468")), [
    [":path", "/sample/path"],
  ]);
  assertDynamicTable(d, []);
});

Deno.test("C.2.3 literal never indexed (new name) leaves the table empty", () => {
  const d = new HpackDecoder();
  assert.deepEqual(d.decode(hex("1008 7061 7373 776f 7264 0673 6563 7265 74")), [
    ["password", "secret"],
  ]);
  assertDynamicTable(d, []);
});

Deno.test("C.2.4 indexed field :method GET", () => {
  const d = new HpackDecoder();
  assert.deepEqual(d.decode(hex("82")), [[":method", "GET"]]);
  assertDynamicTable(d, []);
});

// --- RFC 7541 C.3 / C.4: three requests on one connection

const REQ1: HeaderList = [
  [":method", "GET"],
  [":scheme", "http"],
  [":path", "/"],
  [":authority", "www.example.com"],
];
const REQ2: HeaderList = [...REQ1, ["cache-control", "no-cache"]];
const REQ3: HeaderList = [
  [":method", "GET"],
  [":scheme", "https"],
  [":path", "/index.html"],
  [":authority", "www.example.com"],
  ["custom-key", "custom-value"],
];

function requestSequence(blocks: [string, string, string]): void {
  const d = new HpackDecoder();
  assert.deepEqual(d.decode(hex(blocks[0])), REQ1);
  // Request 1's table: [62] :authority www.example.com (57).
  const t1: [string, string][] = [[":authority", "www.example.com"]];
  assert.equal(tableSize(t1), 57);

  assert.deepEqual(d.decode(hex(blocks[1])), REQ2);
  const t2: [string, string][] = [["cache-control", "no-cache"], ...t1];
  assert.equal(tableSize(t2), 110);

  assert.deepEqual(d.decode(hex(blocks[2])), REQ3);
  const t3: [string, string][] = [["custom-key", "custom-value"], ...t2];
  assert.equal(tableSize(t3), 164);
  assertDynamicTable(d, t3);
}

Deno.test("C.3 requests without Huffman: the dynamic table carries over between blocks", () => {
  requestSequence([
    "8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d",
    "8286 84be 5808 6e6f 2d63 6163 6865",
    "8287 85bf 400a 6375 7374 6f6d 2d6b 6579 0c63 7573 746f 6d2d 7661 6c75 65",
  ]);
});

Deno.test("C.4 requests with Huffman: same lists and table as C.3", () => {
  requestSequence([
    "8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff",
    "8286 84be 5886 a8eb 1064 9cbf",
    "8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf",
  ]);
});

Deno.test("C.3 request 2 alone fails: index 62 needs request 1's table", () => {
  const d = new HpackDecoder();
  assert.throws(() => d.decode(hex("8286 84be 5808 6e6f 2d63 6163 6865")), HpackError);
});

// --- RFC 7541 C.5 / C.6: three responses with a 256-octet table (eviction)

const DATE1 = "Mon, 21 Oct 2013 20:13:21 GMT";
const DATE2 = "Mon, 21 Oct 2013 20:13:22 GMT";
const LOCATION = "https://www.example.com";
const COOKIE = "foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1";

function responseSequence(blocks: [string, string, string]): void {
  const d = new HpackDecoder(256);
  assert.deepEqual(d.decode(hex(blocks[0])), [
    [":status", "302"],
    ["cache-control", "private"],
    ["date", DATE1],
    ["location", LOCATION],
  ]);
  const t1: [string, string][] = [
    ["location", LOCATION],
    ["date", DATE1],
    ["cache-control", "private"],
    [":status", "302"],
  ];
  assert.equal(tableSize(t1), 222);

  assert.deepEqual(d.decode(hex(blocks[1])), [
    [":status", "307"],
    ["cache-control", "private"],
    ["date", DATE1],
    ["location", LOCATION],
  ]);
  // ":status: 307" (42) pushes out ":status: 302".
  const t2: [string, string][] = [[":status", "307"], ...t1.slice(0, 3)];
  assert.equal(tableSize(t2), 222);

  assert.deepEqual(d.decode(hex(blocks[2])), [
    [":status", "200"],
    ["cache-control", "private"],
    ["date", DATE2],
    ["location", LOCATION],
    ["content-encoding", "gzip"],
    ["set-cookie", COOKIE],
  ]);
  const t3: [string, string][] = [
    ["set-cookie", COOKIE],
    ["content-encoding", "gzip"],
    ["date", DATE2],
  ];
  assert.equal(tableSize(t3), 215);
  assertDynamicTable(d, t3);
}

Deno.test("C.5 responses without Huffman, table size 256: entries are evicted oldest first", () => {
  responseSequence([
    "4803 3330 3258 0770 7269 7661 7465 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133" +
    "2032 303a 3133 3a32 3120 474d 546e 1768 7474 7073 3a2f 2f77 7777 2e65 7861 6d70" +
    "6c65 2e63 6f6d",
    "4803 3330 37c1 c0bf",
    "88c1 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133 2032 303a 3133 3a32 3220 474d" +
    "54c0 5a04 677a 6970 7738 666f 6f3d 4153 444a 4b48 514b 425a 584f 5157 454f 5049" +
    "5541 5851 5745 4f49 553b 206d 6178 2d61 6765 3d33 3630 303b 2076 6572 7369 6f6e" +
    "3d31",
  ]);
});

Deno.test("C.6 responses with Huffman, table size 256: same lists and evictions as C.5", () => {
  responseSequence([
    "4882 6402 5885 aec3 771a 4b61 96d0 7abe 9410 54d4 44a8 2005 9504 0b81 66e0 82a6" +
    "2d1b ff6e 919d 29ad 1718 63c7 8f0b 97c8 e9ae 82ae 43d3",
    "4883 640e ffc1 c0bf",
    "88c1 6196 d07a be94 1054 d444 a820 0595 040b 8166 e084 a62d 1bff c05a 839b d9ab" +
    "77ad 94e7 821d d7f2 e6c7 b335 dfdf cd5b 3960 d5af 2708 7f36 72c1 ab27 0fb5 291f" +
    "9587 3160 65c0 03ed 4ee5 b106 3d50 07",
  ]);
});

// --- dynamic table size

Deno.test("a table size update to 0 empties the table; a larger one within the limit is taken", () => {
  const d = new HpackDecoder();
  d.decode(hex("400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572"));
  assertDynamicTable(d, [["custom-key", "custom-header"]]);
  // 0x20: size update to 0, then :method GET.
  assert.deepEqual(d.decode(hex("20 82")), [[":method", "GET"]]);
  assertDynamicTable(d, []);
  // Back up to 4096 (0x3f e1 1f) and two updates in a row (0, then 4096) are both allowed.
  assert.deepEqual(
    d.decode(hex("20 3fe11f 400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572")),
    [
      ["custom-key", "custom-header"],
    ],
  );
  assertDynamicTable(d, [["custom-key", "custom-header"]]);
});

Deno.test("an entry larger than the table empties it and is not added", () => {
  const d = new HpackDecoder(60);
  d.decode(hex("400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572")); // 55
  assertDynamicTable(d, [["custom-key", "custom-header"]]);
  // "custom-key: custom-value" (54) fits after evicting the first.
  d.decode(hex("400a 6375 7374 6f6d 2d6b 6579 0c63 7573 746f 6d2d 7661 6c75 65"));
  assertDynamicTable(d, [["custom-key", "custom-value"]]);
  // A 40-byte value: 10 + 40 + 32 = 82 > 60.
  const big = "x".repeat(40);
  const block = [
    0x40,
    0x0a,
    ...new TextEncoder().encode("custom-key"),
    40,
    ...new TextEncoder().encode(big),
  ];
  assert.deepEqual(d.decode(Uint8Array.from(block)), [["custom-key", big]]);
  assertDynamicTable(d, []);
});

// --- invalid input

Deno.test("invalid: index 0 (indexed field and indexed name)", () => {
  assert.throws(() => new HpackDecoder().decode(hex("80")), HpackError);
});

Deno.test("invalid: an index past the static and dynamic tables", () => {
  // 62 with an empty dynamic table.
  assert.throws(() => new HpackDecoder().decode(hex("be")), HpackError);
  // A literal whose name index is past the table.
  assert.throws(() => new HpackDecoder().decode(hex("7f00 0161")), HpackError); // 63
  assert.throws(() => new HpackDecoder().decode(hex("0f30 0161")), HpackError); // 15 + 48 = 63
  // A huge index.
  assert.throws(() => new HpackDecoder().decode(hex("ff ff ff ff 0f")), HpackError);
});

Deno.test("invalid: a string or integer running past the end of the block", () => {
  // Name length 10, only 3 bytes follow.
  assert.throws(() => new HpackDecoder().decode(hex("400a 6375 73")), HpackError);
  // Value missing entirely.
  assert.throws(() => new HpackDecoder().decode(hex("4003 6162 63")), HpackError);
  // Huffman value length 5, 2 bytes follow.
  assert.throws(() => new HpackDecoder().decode(hex("4485 aec3")), HpackError);
  // Integer continuation cut off.
  assert.throws(() => new HpackDecoder().decode(hex("ff 80")), HpackError);
  assert.throws(() => new HpackDecoder().decode(hex("ff")), HpackError);
  // A string length that is itself cut off.
  assert.throws(() => new HpackDecoder().decode(hex("407f")), HpackError);
});

Deno.test("invalid: integers above 2^32 or with endless continuation bytes", () => {
  // 127 + 0x7f*(1 + 2^7 + 2^14 + 2^21 + 2^28): about 2^35.
  assert.throws(() => new HpackDecoder().decode(hex("ff ff ff ff ff 7f")), HpackError);
  assert.throws(() => decodeInt(hex("ff ff ff ff ff 7f"), 0, 7), HpackError);
  // Zero-valued continuation bytes: the value never grows, but the encoding never ends either.
  // 200 of them before a final 0x01 would make 1 * 2^1400 = Infinity (or 0 * Infinity = NaN);
  // it must be refused, not decoded as a number.
  const zeros = new Uint8Array(202);
  zeros[0] = 0x3f; // table size update, 5-bit prefix full
  zeros.fill(0x80, 1, 201);
  zeros[201] = 0x00;
  assert.throws(() => new HpackDecoder().decode(zeros), HpackError);
  const asString = new Uint8Array(203);
  asString[0] = 0x40; // literal with indexing, new name
  asString[1] = 0x7f; // name length, 7-bit prefix full
  asString.fill(0x80, 2, 202);
  asString[202] = 0x00;
  assert.throws(() => new HpackDecoder().decode(asString), HpackError);
});

Deno.test("invalid: a NaN-sized table update must not disable eviction", () => {
  // If an over-long integer decoded to NaN, `size > max` would be false and the table would
  // never evict. Either way the update must be refused.
  const d = new HpackDecoder(100);
  const block = new Uint8Array(1 + 150 + 1);
  block[0] = 0x3f;
  block.fill(0x80, 1, 151);
  block[151] = 0x00;
  assert.throws(() => d.decode(block), HpackError);
});

Deno.test("invalid: Huffman string with EOS inside", () => {
  // 30 one-bits are EOS; four 0xff bytes hold it and 2 more bits.
  assert.throws(() => huffmanDecode(hex("ffffffff")), HuffmanError);
  // 'a' (00011) then EOS then padding: 5 + 30 + 5 = 40 bits.
  assert.throws(() => huffmanDecode(hex("1fffffffff")), HuffmanError);
  // Through the decoder it is an HpackError (COMPRESSION_ERROR), not a HuffmanError.
  assert.throws(() => new HpackDecoder().decode(hex("4081 1f 84 ffffffff")), HpackError);
});

Deno.test("invalid: Huffman padding longer than 7 bits or not all ones", () => {
  // Valid: 'a' (00011) + 111.
  assert.deepEqual(huffmanDecode(hex("1f")), new TextEncoder().encode("a"));
  // Eight one-bits with no symbol: padding of 8.
  assert.throws(() => huffmanDecode(hex("ff")), HuffmanError);
  // 'a' + 11 one-bits.
  assert.throws(() => huffmanDecode(hex("1fff")), HuffmanError);
  // 'a' + 000: padding not all ones.
  assert.throws(() => huffmanDecode(hex("18")), HuffmanError);
  // 'a' + 101.
  assert.throws(() => huffmanDecode(hex("1d")), HuffmanError);
  // The same through a header block: value "a" with bad padding.
  assert.throws(() => new HpackDecoder().decode(hex("4081 1f 81 18")), HpackError);
  assert.throws(() => new HpackDecoder().decode(hex("4081 1f 82 1fff")), HpackError);
  assert.deepEqual(new HpackDecoder().decode(hex("4081 1f 81 1f")), [["a", "a"]]);
  // Empty Huffman string is fine.
  assert.deepEqual(huffmanDecode(new Uint8Array(0)), new Uint8Array(0));
});

Deno.test("Huffman: every symbol round-trips through the canonical code", () => {
  const codes = huffmanCodes();
  assert.equal(codes.length, 257);
  // Known codes from RFC 7541 Appendix B.
  assert.deepEqual(codes[0x30], { code: 0x0, length: 5 }); // '0'
  assert.deepEqual(codes[0x61], { code: 0x3, length: 5 }); // 'a'
  assert.deepEqual(codes[0x20], { code: 0x14, length: 6 }); // ' '
  assert.deepEqual(codes[0], { code: 0x1ff8, length: 13 });
  assert.deepEqual(codes[256], { code: 0x3fffffff, length: 30 }); // EOS
  // Kraft: the code is complete.
  assert.equal(codes.reduce((s, c) => s + 2 ** -c.length, 0), 1);
  // Encode all 256 bytes (twice, in two orders) and decode them back.
  const symbols = [...Array(256).keys(), ...[...Array(256).keys()].reverse()];
  const bits: number[] = [];
  for (const s of symbols) {
    const { code, length } = codes[s];
    for (let b = length - 1; b >= 0; b--) bits.push(Math.floor(code / 2 ** b) % 2);
  }
  while (bits.length % 8 !== 0) bits.push(1);
  const bytes = new Uint8Array(bits.length / 8);
  for (let i = 0; i < bits.length; i++) bytes[i >> 3] |= bits[i] << (7 - (i & 7));
  assert.deepEqual(huffmanDecode(bytes), Uint8Array.from(symbols));
});

Deno.test("invalid: table size update above the allowed size", () => {
  // 4097 (0x3f e2 1f) with the default 4096.
  assert.throws(() => new HpackDecoder().decode(hex("3fe21f 82")), HpackError);
  // 4096 is allowed.
  assert.deepEqual(new HpackDecoder().decode(hex("3fe11f 82")), [[":method", "GET"]]);
  // 257 with a 256 table (0x3f e2 01); 256 (0x3f e1 01) is fine.
  assert.throws(() => new HpackDecoder(256).decode(hex("3fe201")), HpackError);
  assert.deepEqual(new HpackDecoder(256).decode(hex("3fe101")), []);
});

Deno.test("invalid: table size update after a header field", () => {
  assert.throws(() => new HpackDecoder().decode(hex("82 20")), HpackError);
  assert.throws(
    () => new HpackDecoder().decode(hex("040c 2f73 616d 706c 652f 7061 7468 3f e1 1f")),
    HpackError,
  );
  // At the start of the next block it is fine again.
  const d = new HpackDecoder();
  d.decode(hex("82"));
  assert.deepEqual(d.decode(hex("20 82")), [[":method", "GET"]]);
});

Deno.test("invalid: header list larger than maxHeaderListSize", () => {
  const d = new HpackDecoder(4096, 100);
  // Two fields of 10 + 32 bytes each fit in 100; a third does not.
  const field = [
    0x00,
    0x05,
    ...new TextEncoder().encode("x-abc"),
    0x05,
    ...new TextEncoder().encode("12345"),
  ];
  assert.equal(d.decode(Uint8Array.from([...field, ...field])).length, 2);
  assert.throws(() => d.decode(Uint8Array.from([...field, ...field, ...field])), HpackError);
});

// --- encoder

Deno.test("encodeResponseHeaders: 200 is the static index 8, one byte", () => {
  const block = encodeResponseHeaders(200);
  assert.deepEqual(block, hex("88"));
  assert.deepEqual(new HpackDecoder().decode(block), [[":status", "200"]]);
});

Deno.test("encodeResponseHeaders: every status in the static table is its index", () => {
  for (const [status, index] of [[204, 9], [206, 10], [304, 11], [400, 12], [404, 13], [500, 14]]) {
    assert.deepEqual(encodeResponseHeaders(status), Uint8Array.of(0x80 | index));
    assert.deepEqual(new HpackDecoder().decode(encodeResponseHeaders(status)), [
      [":status", String(status)],
    ]);
  }
});

Deno.test("encodeResponseHeaders: 413 is a literal with the :status name, no table change", () => {
  const block = encodeResponseHeaders(413);
  // Literal without indexing, name index 8, value "413".
  assert.deepEqual(block, hex("08 03 343133"));
  const d = new HpackDecoder();
  assert.deepEqual(d.decode(block), [[":status", "413"]]);
  assertDynamicTable(d, []);
});

Deno.test("encodeResponseHeaders: extra headers, lower-cased, long values, decoder table untouched", () => {
  const long = "v".repeat(300); // length needs a multi-byte integer
  const block = encodeResponseHeaders(503, {
    "Content-Type": "application/json",
    "x-empty": "",
    "x-long": long,
  });
  const d = new HpackDecoder();
  assert.deepEqual(d.decode(block), [
    [":status", "503"],
    ["content-type", "application/json"],
    ["x-empty", ""],
    ["x-long", long],
  ]);
  assertDynamicTable(d, []);
  // The same decoder keeps decoding later blocks the same way (no hidden state).
  assert.deepEqual(d.decode(encodeResponseHeaders(200, { a: "b" })), [
    [":status", "200"],
    ["a", "b"],
  ]);
});
