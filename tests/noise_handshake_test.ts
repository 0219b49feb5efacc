import assert from "node:assert/strict";
import { blake2s as nobleBlake2s } from "@noble/hashes/blake2.js";
import { hkdf as nobleHkdf } from "@noble/hashes/hkdf.js";
import { blake2s, hkdf2, hmacBlake2s, x25519 } from "../lib/noise/crypto.ts";
import { createHmac } from "node:crypto";
import {
  NoiseHandshakeError,
  prologue,
  respondToHandshake,
  startClientHandshake,
} from "../lib/noise/handshake.ts";
import { NoiseFrameError, RESPONSE_LEN } from "../lib/noise/messages.ts";
import { RecordOpener, RecordSealer } from "../lib/noise/records.ts";
import { generateKeyPair, publicKeyOf } from "../lib/tailcfg/keys.ts";

const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");
const unhex = (s: string) => new Uint8Array(Buffer.from(s, "hex"));

/**
 * A transcript captured against tailscale's own Go implementation (tailscale.com v1.98.0,
 * control/controlbase): the Go client (ClientDeferred, random ephemeral, capver 145) sent
 * `initiation`; our responder with the fixed keys below produced `response`, which Go accepted
 * (same handshake hash); Go then sent `clientRecords` (3 records: "hello from go",
 * "second record", 300 bytes of i*7) and decrypted our `serverRecords` ("hello from deno",
 * then 200 bytes of i*13). Record counters 1 and 2 pin the big-endian nonce.
 */
const GO_TRANSCRIPT = {
  serverPrivateKey: "0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20",
  machinePrivateKey: "404142434445464748494a4b4c4d4e4f505152535455565758595a5b5c5d5e5f",
  serverEphemeralPrivateKey: "808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f",
  initiation:
    "0091010060f63a7a1f270f9428d374160fd5e3ae1f9a33c6dd07c7f5f316fe0d656bbd942d67ec1c9da93cce" +
    "77665823d7a74be6c93d3b0ca455043f4eeb3512ca27c34b45deeffb160e09fda8341ec18c6c79f2c461bc61" +
    "8d5b9859b44aed93bfa61d40a5",
  response:
    "020030493e82fc74464a59268817623d2053c5eb8e2cc4a988b4fee179ec6b010d531d3c23a631d287494d11" +
    "22eeb7103f68ca",
  handshakeHash: "c6aaeff5c0623dc82c2c39e95b287cf19592b2c472c0345e6ef5d995effbf420",
  clientRecords:
    "04001d3cb7ed36e784a2c4a90a85862e06318f42a9d85652a6e969c281271a4104001d39f4a48e4a6a648b21" +
    "4194ec940b0500f2944a8ff0d741103d67b5309f04013c2377bffbda1691d428be4409074a3ece21d53d304c" +
    "3d85f6861fc9561c39e3864961650654eb95c6d4c7168889f911d0fd80a05cb11d1648ce51884a9216f68f3d" +
    "3cf1f02808e9d932f3bda44ca92699546530522a797dc4e6487986428e756f643e31fd72827287d807c13d49" +
    "da605af81acd43b65d016514d7412b924b71290735ee47c16857860f493efb1d93600ad128af7b906674afef" +
    "c97359a57d5a2f50d3da2effd3cd280b11e47ad4771a8abbede87ea18f37dbe110177e791821fc6143b3d5b7" +
    "570cf09ba393f78a4ec17cb80c011ee78cec47c0a476b1fcebc786a56e4c8172428cc878b824e81285f8ed3e" +
    "460352acb382e5f3a61adc3dd34298cdf18fd73f4aa30fcbbfcc4e665028543adb0ddc943c03829d93f5124a" +
    "e15d3494b2954a4ad61f257975b34bc5cfe3f760731dce864b28b5d53f5256",
  serverRecords:
    "04001f57866d7f10b38b56af0cf84de2f054470744622cd5c212a11f41aedf3515f90400d8029ee2db5dc7c8" +
    "a294be63de39467c6fab0d6843d40c8feb4c030e584e6c3a3dac18b3ef9728618e7c767371d18c12c9dff959" +
    "d5960dc9a621d6c2c940e43851a9184b2f961de27ac25eeb2cdbc2b7852fe5d3fc82bceec90fb6244123fa32" +
    "1aa9631472470e5327a26eb6000f1be7d3892a501e9f0972a2925e75684992f8cba70e3fb947a6880598b4f9" +
    "161e163d0cb470d3bef3b70bacdd1226f360f1f4350e2a3d18164e3b66447bfc274891b680d13cf68b0d221c" +
    "2e3ba402fe14d2b5a7fe4d9c328922c2f407987e20f2a005322f4dbe8a24977669",
};

/**
 * The other direction, also checked against Go (controlbase.Server, v1.98.0): our initiator with
 * the fixed keys below (capver 113) produced `initiation`; Go answered `response` and sent
 * `serverRecords` ("hello client", "second server record", 100 bytes of i*3), and decrypted our
 * `clientRecords` ("ping one", "ping two", bytes 0..49); both sides had the same handshake hash.
 */
const GO_SERVER_TRANSCRIPT = {
  serverPrivateKey: "101112131415161718191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f",
  machinePrivateKey: "505152535455565758595a5b5c5d5e5f606162636465666768696a6b6c6d6e6f",
  clientEphemeralPrivateKey: "a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebf",
  initiation:
    "0071010060605a725d2a4adfeeb1a29e17edd621c1b7593ee8cdbc44ac6c4ab6e2f805d23cd08b8695786808" +
    "257526c1aa6b37d30d9669cbf4a9f32b1c4895291da918fbf0ae0115e2f1e23ea4e0a256df62ac809f947260" +
    "9649917795efae06f7ea6daa88",
  response:
    "020030ec1f360727724556aa94e1a8bb09293fb7d6f7ea4e8f46844a5b502b4debee617cc6c83ecb84eddc2c" +
    "6dacd3cc39b63e",
  handshakeHash: "125c0726a150144a9e73a1ec678d4043a2a1ac582ed61c55502b501ae8fe2d0d",
  serverRecords:
    "04001c014ebd5ce44f849636bef91b4bc54e8b6ce0bd6e589013d00bd36ede04002426240e8ac10c909d8bce" +
    "b2cf63ee58f332a38f5f5bcfcd77923aa7c99137a58160ae8a97040074b62d48476d88acc864ce81822cb4a4" +
    "4df88c135febe59739129eb45d6d726e5b1f47bd864639e33fa949692d6566f16fa9af6065cbd5a6181134f7" +
    "f857cd05715f369d40befed16f04686af05a0ffae910b8a7e0ca1fc91ab5d0c24a6a2aec9c32f3828d139946" +
    "ecea079cbaba4f10ea28aa0a86",
  clientRecords:
    "0400183910a99286af1d40bce8cae892e8b22e63f6225c8053fec8040018464bc923374f5b58e45c2a93cb6e" +
    "662bd4e3efcc1a6d1e15040042a0d6b8c0adeaf956a2ebf5726cb795e2e3565214cbe06ddd5f09370ca8e9dd" +
    "e565b666ba59c0933d13b6d92c0f86a40190f6b093a47e9eea57f6f84c418a21a26a2d",
};

/** Splits a byte stream of record frames into their ciphertexts. */
function recordsOf(stream: Uint8Array): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (let off = 0; off < stream.length;) {
    assert.equal(stream[off], 0x04);
    const len = (stream[off + 1] << 8) | stream[off + 2];
    out.push(stream.subarray(off + 3, off + 3 + len));
    off += 3 + len;
  }
  return out;
}

const pattern = (n: number, mul: number) =>
  Uint8Array.from({ length: n }, (_, i) => (i * mul) & 255);
const text = (s: string) => new TextEncoder().encode(s);

Deno.test("handshake: responder reproduces a transcript recorded with tailscale's Go code", () => {
  const t = GO_TRANSCRIPT;
  const serverPriv = unhex(t.serverPrivateKey);
  const es = unhex(t.serverEphemeralPrivateKey);
  const hs = respondToHandshake({
    serverPrivateKey: serverPriv,
    initiation: unhex(t.initiation),
    ephemeral: { privateKey: es, publicKey: publicKeyOf(es) },
  });
  assert.equal(hs.version, 145);
  assert.deepEqual(hs.peerPublicKey, publicKeyOf(unhex(t.machinePrivateKey)));
  assert.equal(hex(hs.response), t.response);
  assert.equal(hex(hs.handshakeHash), t.handshakeHash);

  // Client → server: three Go records (counters 0, 1, 2).
  const opener = new RecordOpener(hs.receiveKey);
  const plains = recordsOf(unhex(t.clientRecords)).map((r) => opener.open(r));
  assert.deepEqual(plains.map((p) => new Uint8Array(p)), [
    text("hello from go"),
    text("second record"),
    pattern(300, 7),
  ]);

  // Server → client: what Go decrypted is exactly what we seal.
  const sealer = new RecordSealer(hs.sendKey);
  const sealed = Buffer.concat([
    sealer.seal(text("hello from deno")),
    sealer.seal(pattern(200, 13)),
  ]);
  assert.equal(sealed.toString("hex"), t.serverRecords);
});

Deno.test("handshake: initiator reproduces a transcript recorded against tailscale's Go server", () => {
  const t = GO_SERVER_TRANSCRIPT;
  const ec = unhex(t.clientEphemeralPrivateKey);
  const client = startClientHandshake({
    machinePrivateKey: unhex(t.machinePrivateKey),
    serverPublicKey: publicKeyOf(unhex(t.serverPrivateKey)),
    version: 113,
    ephemeral: { privateKey: ec, publicKey: publicKeyOf(ec) },
  });
  assert.equal(hex(client.initiation), t.initiation);
  const hs = client.finish(unhex(t.response));
  assert.equal(hex(hs.handshakeHash), t.handshakeHash);
  const opener = new RecordOpener(hs.receiveKey);
  assert.deepEqual(recordsOf(unhex(t.serverRecords)).map((r) => new Uint8Array(opener.open(r))), [
    text("hello client"),
    text("second server record"),
    pattern(100, 3),
  ]);
  const sealer = new RecordSealer(hs.sendKey);
  const sealed = Buffer.concat(
    [text("ping one"), text("ping two"), pattern(50, 1)].map((p) => sealer.seal(p)),
  );
  assert.equal(sealed.toString("hex"), t.clientRecords);
});

Deno.test("handshake: initiator and responder agree on keys, peers and hash", () => {
  // The initiation header is version 145, type 1, length 96.
  const server = generateKeyPair();
  const machine = generateKeyPair();
  const client = startClientHandshake({
    machinePrivateKey: machine.privateKey,
    serverPublicKey: server.publicKey,
    version: 145,
  });
  assert.equal(client.initiation.length, 101);
  assert.equal(hex(client.initiation.subarray(0, 5)), "0091010060");
  const srv = respondToHandshake({
    serverPrivateKey: server.privateKey,
    initiation: client.initiation,
  });
  assert.equal(srv.response.length, RESPONSE_LEN);
  const cli = client.finish(srv.response);
  assert.deepEqual(srv.peerPublicKey, machine.publicKey);
  assert.deepEqual(cli.peerPublicKey, server.publicKey);
  assert.deepEqual(cli.sendKey, srv.receiveKey);
  assert.deepEqual(cli.receiveKey, srv.sendKey);
  assert.notDeepEqual(cli.sendKey, cli.receiveKey);
  assert.deepEqual(cli.handshakeHash, srv.handshakeHash);
  assert.throws(() => client.finish(srv.response), /already finished/);
});

Deno.test("handshake: the prologue carries the version from the header", () => {
  assert.equal(new TextDecoder().decode(prologue(131)), "Tailscale Control Protocol v131");
  const server = generateKeyPair();
  const client = startClientHandshake({
    machinePrivateKey: generateKeyPair().privateKey,
    serverPublicKey: server.publicKey,
    version: 131,
  });
  // Rewriting the cleartext version changes the prologue, so authentication fails.
  const forged = client.initiation.slice();
  forged[1] = 145;
  assert.throws(
    () => respondToHandshake({ serverPrivateKey: server.privateKey, initiation: forged }),
    NoiseHandshakeError,
  );
  assert.equal(
    respondToHandshake({ serverPrivateKey: server.privateKey, initiation: client.initiation })
      .version,
    131,
  );
});

Deno.test("handshake: wrong server key or tampered bytes fail authentication", () => {
  const server = generateKeyPair();
  const stranger = generateKeyPair();
  const client = startClientHandshake({
    machinePrivateKey: generateKeyPair().privateKey,
    serverPublicKey: stranger.publicKey,
    version: 145,
  });
  assert.throws(
    () =>
      respondToHandshake({ serverPrivateKey: server.privateKey, initiation: client.initiation }),
    /decrypting machine key failed/,
  );

  const good = startClientHandshake({
    machinePrivateKey: generateKeyPair().privateKey,
    serverPublicKey: server.publicKey,
    version: 145,
  });
  for (const i of [5, 40, 100]) {
    const bad = good.initiation.slice();
    bad[i] ^= 1;
    assert.throws(
      () => respondToHandshake({ serverPrivateKey: server.privateKey, initiation: bad }),
      NoiseHandshakeError,
      `byte ${i}`,
    );
  }
  const srv = respondToHandshake({
    serverPrivateKey: server.privateKey,
    initiation: good.initiation,
  });
  const badResp = srv.response.slice();
  badResp[50] ^= 0x80;
  assert.throws(() => good.finish(badResp), /decrypting handshake response tag failed/);
});

Deno.test("handshake: malformed initiations are frame errors with Go's messages", () => {
  const server = generateKeyPair();
  const init = startClientHandshake({
    machinePrivateKey: generateKeyPair().privateKey,
    serverPublicKey: server.publicKey,
    version: 145,
  }).initiation;
  const respond = (b: Uint8Array) => () =>
    respondToHandshake({ serverPrivateKey: server.privateKey, initiation: b });
  assert.throws(respond(init.subarray(0, 100)), /wrong handshake initiation size/);
  const wrongType = init.slice();
  wrongType[2] = 4;
  assert.throws(respond(wrongType), /unexpected handshake message type/);
  const wrongLen = init.slice();
  wrongLen[4] = 95;
  assert.throws(respond(wrongLen), NoiseFrameError);
});

Deno.test("handshake: low-order ephemeral key is refused (all-zero DH)", () => {
  const server = generateKeyPair();
  const init = startClientHandshake({
    machinePrivateKey: generateKeyPair().privateKey,
    serverPublicKey: server.publicKey,
    version: 145,
  }).initiation.slice();
  init.fill(0, 5, 37); // e = 0: a low-order point
  assert.throws(
    () => respondToHandshake({ serverPrivateKey: server.privateKey, initiation: init }),
    /computing es/,
  );
  assert.throws(() => x25519(server.privateKey, new Uint8Array(32)), /X25519/);
});

Deno.test("crypto: BLAKE2s and HKDF agree with an independent implementation (noble)", () => {
  const ck = pattern(32, 3);
  for (const ikm of [new Uint8Array(0), pattern(32, 5)]) {
    const [a, b] = hkdf2(ck, ikm);
    const ref = nobleHkdf(nobleBlake2s, ikm, ck, new Uint8Array(0), 64);
    assert.deepEqual(a, ref.subarray(0, 32));
    assert.deepEqual(b, ref.subarray(32));
  }
  assert.deepEqual(blake2s(text("Noise_"), text("IK")), nobleBlake2s(text("Noise_IK")));
});

Deno.test("handshake: HMAC-BLAKE2s from two hashes equals node:crypto's HMAC for any key length", () => {
  for (const keyLen of [0, 1, 32, 63, 64, 65, 100]) {
    for (const msgLen of [0, 1, 32, 64, 200]) {
      const key = Uint8Array.from({ length: keyLen }, (_, i) => (i * 7 + 3) & 0xff);
      const msg = Uint8Array.from({ length: msgLen }, (_, i) => (i * 13 + 1) & 0xff);
      const want = createHmac("blake2s256", key).update(msg).digest();
      assert.deepEqual(
        hmacBlake2s(key, msg.subarray(0, msgLen >> 1), msg.subarray(msgLen >> 1)),
        new Uint8Array(want),
      );
    }
  }
});
