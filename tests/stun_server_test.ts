import assert from "node:assert/strict";
import dgram from "node:dgram";
import { silentLogger } from "../lib/log/log.ts";
import { startStunServer } from "../lib/derp/stun_server.ts";
import {
  bindingRequest,
  bindingResponse,
  ipBytes,
  parseBindingRequest,
  parseBindingResponse,
  StunError,
} from "../lib/derp/stun.ts";

/** Bitwise CRC-32 (IEEE), independent of the implementation under test. */
function crc32(b: Uint8Array): number {
  let c = 0xffffffff;
  for (const x of b) {
    c ^= x;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0xedb88320 : c >>> 1;
  }
  return (c ^ 0xffffffff) >>> 0;
}

/** A binding request byte by byte, as tailscaled's net/stun builds it. */
// deno-fmt-ignore
function handBuiltRequest(txId: Uint8Array): Uint8Array {
  const head = [
    0x00, 0x01,             // binding request
    0x00, 0x14,             // 20 bytes of attributes
    0x21, 0x12, 0xa4, 0x42, // magic cookie
    ...txId,
    0x80, 0x22, 0x00, 0x08, // SOFTWARE, 8 bytes
    ...new TextEncoder().encode("tailnode"),
  ];
  const fp = (crc32(Uint8Array.from(head)) ^ 0x5354554e) >>> 0;
  return Uint8Array.from([
    ...head,
    0x80, 0x28, 0x00, 0x04, // FINGERPRINT
    fp >>> 24, (fp >>> 16) & 0xff, (fp >>> 8) & 0xff, fp & 0xff,
  ]);
}

// RFC 5769 sample transaction ID.
const TXID = Uint8Array.of(0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86, 0xfa, 0x87, 0xdf, 0xae);

Deno.test("stun: a hand-built tailscale binding request parses; ours is byte-identical", () => {
  const req = handBuiltRequest(TXID);
  assert.equal(req.length, 40);
  assert.deepEqual(parseBindingRequest(req), TXID);
  assert.deepEqual(bindingRequest(TXID), req);
});

Deno.test("stun: responses carry XOR-MAPPED-ADDRESS as in RFC 5769 (v4 and v6)", () => {
  const v4 = bindingResponse(TXID, ipBytes("192.0.2.1")!, 32853);
  assert.deepEqual(
    v4.subarray(0, 8),
    Uint8Array.of(0x01, 0x01, 0x00, 0x0c, 0x21, 0x12, 0xa4, 0x42),
  );
  assert.deepEqual(v4.subarray(8, 20), TXID);
  assert.deepEqual(
    v4.subarray(20),
    Uint8Array.of(0x00, 0x20, 0x00, 0x08, 0x00, 0x01, 0xa1, 0x47, 0xe1, 0x12, 0xa6, 0x43),
  );
  const v6 = bindingResponse(TXID, ipBytes("2001:db8:1234:5678:11:2233:4455:6677")!, 32853);
  assert.deepEqual(
    v6.subarray(20),
    Uint8Array.of(
      0x00,
      0x20,
      0x00,
      0x14,
      0x00,
      0x02,
      0xa1,
      0x47,
      0x01,
      0x13,
      0xa9,
      0xfa,
      0xa5,
      0xd3,
      0xf1,
      0x79,
      0xbc,
      0x25,
      0xf4,
      0xb5,
      0xbe,
      0xd2,
      0xb9,
      0xd9,
    ),
  );
  const parsed = parseBindingResponse(v6);
  assert.deepEqual(parsed.txId, TXID);
  assert.deepEqual(parsed.addr, ipBytes("2001:db8:1234:5678:11:2233:4455:6677"));
  assert.equal(parsed.port, 32853);
  // IPv4-mapped sources (dual-stack sockets) are answered as IPv4.
  assert.deepEqual(ipBytes("::ffff:192.0.2.1"), Uint8Array.of(192, 0, 2, 1));
  assert.deepEqual(ipBytes("fe80::1%eth0")?.length, 16);
  assert.equal(ipBytes("not an ip"), null);
});

function malformed(): [string, Uint8Array][] {
  const good = handBuiltRequest(TXID);
  const badFingerprint = good.slice();
  badFingerprint[39] ^= 1;
  const badCookie = good.slice();
  badCookie[5] = 0;
  const topBits = good.slice();
  topBits[0] = 0x40;
  const notRequest = good.slice();
  notRequest[1] = 0x11;
  const otherSoftware = good.slice();
  otherSoftware[24] = 0x54; // "Tailnode"
  const overflow = good.slice();
  overflow[23] = 0xff; // SOFTWARE claims 255 bytes
  return [
    ["empty", new Uint8Array(0)],
    ["random bytes", Uint8Array.from({ length: 60 }, (_, i) => (i * 37) & 0xff)],
    ["header only", good.slice(0, 20)],
    ["truncated", good.slice(0, 30)],
    ["wrong fingerprint", badFingerprint],
    ["wrong magic cookie", badCookie],
    ["top bits set", topBits],
    ["not a binding request", notRequest],
    ["other software", otherSoftware],
    ["attribute length past the end", overflow],
    ["fingerprint not last", Uint8Array.from([...good, 0x80, 0x22, 0x00, 0x00])],
  ];
}

Deno.test("stun: malformed requests are refused with StunError, never anything else", () => {
  for (const [what, b] of malformed()) {
    assert.throws(() => parseBindingRequest(b), StunError, what);
  }
});

function waitMessage(sock: dgram.Socket, ms: number): Promise<Uint8Array> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => {
      sock.off("message", on);
      reject(new Error("no STUN response"));
    }, ms);
    const on = (m: Uint8Array) => {
      clearTimeout(t);
      resolve(m);
    };
    sock.once("message", on);
  });
}

async function exchange(family: 4 | 6) {
  const host = family === 4 ? "127.0.0.1" : "::1";
  const server = await startStunServer({ address: host, port: 0, log: silentLogger() });
  const client = dgram.createSocket(family === 4 ? "udp4" : "udp6");
  await new Promise<void>((r) => client.bind(0, host, () => r()));
  return { server, client, host };
}

Deno.test("stun server: answers an IPv4 binding request with the observed address", async () => {
  const { server, client, host } = await exchange(4);
  try {
    const tx = crypto.getRandomValues(new Uint8Array(12));
    client.send(handBuiltRequest(tx), server.port, host);
    const res = parseBindingResponse(await waitMessage(client, 3000));
    assert.deepEqual(res.txId, tx);
    assert.deepEqual(res.addr, Uint8Array.of(127, 0, 0, 1));
    assert.equal(res.port, client.address().port);
  } finally {
    client.close();
    await server.close();
  }
});

Deno.test("stun server: answers over IPv6 with a v6 XOR-MAPPED-ADDRESS", async () => {
  const { server, client, host } = await exchange(6);
  try {
    client.send(handBuiltRequest(TXID), server.port, host);
    const raw = await waitMessage(client, 3000);
    assert.equal(raw[25], 0x02, "IPv6 family");
    const res = parseBindingResponse(raw);
    assert.deepEqual(res.addr, ipBytes("::1"));
    assert.equal(res.port, client.address().port);
  } finally {
    client.close();
    await server.close();
  }
});

Deno.test("stun server: malformed packets get no answer and do not stop the server", async () => {
  const { server, client, host } = await exchange(4);
  try {
    const bad = malformed();
    for (const [, b] of bad) client.send(b, server.port, host);
    const tx = crypto.getRandomValues(new Uint8Array(12));
    client.send(handBuiltRequest(tx), server.port, host);
    // The first datagram back must be the answer to the valid request.
    const res = parseBindingResponse(await waitMessage(client, 3000));
    assert.deepEqual(res.txId, tx);
    const stats = server.stats();
    assert.equal(stats.ignored, bad.length);
    assert.equal(stats.responses, 1);
  } finally {
    client.close();
    await server.close();
  }
});
