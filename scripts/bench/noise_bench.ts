/** Noise transport costs: record sealing/opening (native ChaCha20-Poly1305) and one handshake. */
import { respondToHandshake, startClientHandshake } from "../../lib/noise/handshake.ts";
import { RecordOpener, RecordSealer } from "../../lib/noise/records.ts";
import { generateKeyPair } from "../../lib/tailcfg/keys.ts";

const key = crypto.getRandomValues(new Uint8Array(32));
const payload = crypto.getRandomValues(new Uint8Array(64 * 1024));
const sealer = new RecordSealer(key);
const frames = new RecordSealer(key).seal(payload);
const server = generateKeyPair();
const machine = generateKeyPair();

Deno.bench("noise: seal 64 KiB into 17 records", { group: "records" }, () => {
  sealer.seal(payload);
});

Deno.bench("noise: open 64 KiB from 17 records", { group: "records" }, () => {
  const opener = new RecordOpener(key);
  for (let off = 0; off < frames.length;) {
    const len = frames.readUInt16BE(off + 1);
    opener.open(frames.subarray(off + 3, off + 3 + len));
    off += 3 + len;
  }
});

Deno.bench("noise: full IK handshake (client + server side)", () => {
  const c = startClientHandshake({
    machinePrivateKey: machine.privateKey,
    serverPublicKey: server.publicKey,
    version: 145,
  });
  c.finish(
    respondToHandshake({
      serverPrivateKey: server.privateKey,
      serverPublicKey: server.publicKey,
      initiation: c.initiation,
    }).response,
  );
});
