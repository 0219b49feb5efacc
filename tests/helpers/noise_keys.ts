import { respondToHandshake, startClientHandshake } from "../../lib/noise/handshake.ts";
import { generateKeyPair } from "../../lib/tailcfg/keys.ts";

/** Both ends of a completed IK handshake (capability version 145), for tests of what follows. */
export function handshakeKeys() {
  const server = generateKeyPair();
  const machine = generateKeyPair();
  const client = startClientHandshake({
    machinePrivateKey: machine.privateKey,
    serverPublicKey: server.publicKey,
    version: 145,
  });
  const srv = respondToHandshake({
    serverPrivateKey: server.privateKey,
    initiation: client.initiation,
  });
  const cli = client.finish(srv.response);
  return { srv, cli, machine };
}
