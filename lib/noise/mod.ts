/**
 * The ts2021 transport: Noise_IK_25519_ChaChaPoly_BLAKE2s over an HTTP (or WebSocket) upgrade,
 * carrying HTTP/2. Server side: `ts2021UpgradeHandler` / `handleTs2021Upgrade`; each
 * established connection is a `NoiseConn` (a plaintext Duplex) to hand to a node:http2 server.
 * Client side (tests, tools): `noiseClientConnect`.
 */
export {
  handleTs2021Upgrade,
  type Ts2021ConnectionInfo,
  ts2021UpgradeHandler,
  type Ts2021UpgradeOptions,
  UPGRADE_PROTOCOL,
} from "./upgrade.ts";
export { NoiseConn, type NoiseConnOptions, NoiseProtocolError } from "./conn.ts";
export {
  noiseClientConnect,
  type NoiseClientConnection,
  type NoiseClientOptions,
  NoiseDialError,
} from "./client.ts";
export {
  EARLY_PAYLOAD_MAGIC,
  type EarlyNoise,
  EarlyPayloadError,
  encodeEarlyPayload,
  readEarlyPayload,
} from "./early_payload.ts";
export {
  type HandshakeResult,
  NoiseHandshakeError,
  respondToHandshake,
  startClientHandshake,
} from "./handshake.ts";
export { NoiseRecordError, RecordOpener, RecordSealer } from "./records.ts";
export { MAX_FRAME_LEN, MAX_PLAINTEXT_LEN, NoiseFrameError } from "./messages.ts";
