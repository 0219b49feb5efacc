/**
 * Server glue for `POST|GET /ts2021` on a node:http server's 'upgrade' event: checks the upgrade
 * request, answers the Noise handshake (carried in the X-Tailscale-Handshake header), writes
 * `101` + the 51-byte response + the early payload in one write, and hands the plaintext
 * NoiseConn to onConnection (which serves HTTP/2 on it).
 *
 * Refusals, as tailscale's controlhttpserver and headscale do them:
 * - missing/unknown Upgrade, missing or non-base64 handshake header, wrong method → HTTP 400/405
 *   with a plain-text reason;
 * - a malformed initiation or a capability version below minCapVersion → `101`, then a Noise
 *   error frame (type 0x03) with a fixed reason (the client shows `server error: "…"`), then close;
 * - a handshake that fails to authenticate → `101`, error frame "handshake failed", close.
 * Nothing here throws: every failure ends this one socket.
 */
import type { IncomingMessage } from "node:http";
import type { Duplex } from "node:stream";
import type { Logger } from "../log/log.ts";
import { clientAddress } from "../net/client_addr.ts";
import { formatKey, generateKeyPair, type KeyPair, publicKeyOf } from "../tailcfg/keys.ts";
import { NoiseConn } from "./conn.ts";
import { encodeEarlyPayload } from "./early_payload.ts";
import { NoiseHandshakeError, respondToHandshake } from "./handshake.ts";
import {
  encodeErrorFrame,
  INITIATION_HEADER_LEN,
  INITIATION_LEN,
  MSG_INITIATION,
  NoiseFrameError,
} from "./messages.ts";
import { RecordOpener, RecordSealer } from "./records.ts";
import type { ChaChaSealEngine } from "./chacha_wasm.ts";
import type { WriteBatch } from "../net/write_batch.ts";
import { type X25519Key, x25519PrivateKey } from "./crypto.ts";
import { MIN_CAP_VERSION } from "../tailcfg/capver.ts";
import { acceptWebSocketUpgrade, isWebSocketUpgrade } from "./websocket.ts";

export const UPGRADE_PROTOCOL = "tailscale-control-protocol";
export const HANDSHAKE_HEADER = "x-tailscale-handshake";

export interface Ts2021ConnectionInfo {
  /** The HTTP upgrade request (remote address, forwarded headers…). */
  request: IncomingMessage;
  /** The per-connection challenge key whose public half went out in the early payload. */
  challenge?: KeyPair;
  /** "http" for the plain upgrade, "websocket" for the js/wasm variant. */
  transport: "http" | "websocket";
}

export interface Ts2021UpgradeOptions {
  /** The server's Noise static private key (raw 32 bytes). */
  serverPrivateKey: Uint8Array;
  /** Its public key; computed from the private key when absent. */
  serverPublicKey?: Uint8Array;
  /** Clients with a lower capability version are refused. Default 113. */
  minCapVersion?: number;
  /** Send the early payload with a fresh nodeKeyChallenge (default true; never on WebSocket). */
  sendEarlyPayload?: boolean;
  /**
   * When the connection was accepted (performance.now()), if known. An upgrade read more than
   * CLIENT_DIAL_BUDGET_MS later is dropped without a handshake: its client has given up.
   */
  connectedAt?: (socket: Duplex) => number | undefined;
  /** serverPrivateKey imported once (ts2021UpgradeHandler does it). */
  serverKey?: X25519Key;
  /** Seals what the connections send (one for the whole server); node:crypto without it. */
  sealEngine?: ChaChaSealEngine;
  /** The server's fan-out batch (lib/net/write_batch.ts), for every connection. */
  writeBatch?: WriteBatch;
  /** Receives each established connection; should serve HTTP/2 on it. */
  onConnection(conn: NoiseConn, info: Ts2021ConnectionInfo): void;
  log?: Logger;
}

/** Prepares the options once (public key) and returns a Router-compatible upgrade handler. */
export function ts2021UpgradeHandler(
  opts: Ts2021UpgradeOptions,
): (req: IncomingMessage, socket: Duplex, head: Buffer) => void {
  const prepared = {
    ...opts,
    serverPublicKey: opts.serverPublicKey ?? publicKeyOf(opts.serverPrivateKey),
    serverKey: opts.serverKey ?? x25519PrivateKey(opts.serverPrivateKey),
  };
  return (req, socket, head) => handleTs2021Upgrade(req, socket, head, prepared);
}

/** Handles one `/ts2021` upgrade. Never throws; failures close this socket only. */
export function handleTs2021Upgrade(
  req: IncomingMessage,
  socket: Duplex,
  head: Buffer,
  opts: Ts2021UpgradeOptions,
): void {
  // A late socket error must not become an uncaught exception.
  socket.on("error", (e) => opts.log?.debug("ts2021 socket error", { error: e }));
  try {
    accept(req, socket, head, opts);
  } catch (e) {
    opts.log?.error("ts2021 upgrade failed", { error: e, remote: clientAddress(req) });
    socket.destroy();
  }
}

/**
 * A Tailscale client gives its whole dial (TCP, upgrade, handshake) 10 s, more only with a dial
 * plan from control, which we never send. A restart storm of 10,000 nodes keeps the server busy
 * long enough for the last upgrades to be read after that: a handshake for them is wasted.
 */
export const CLIENT_DIAL_BUDGET_MS = 10_000;

function accept(req: IncomingMessage, socket: Duplex, head: Buffer, opts: Ts2021UpgradeOptions) {
  const log = opts.log;
  const remote = clientAddress(req);
  const at = opts.connectedAt?.(socket);
  if (at !== undefined && performance.now() - at > CLIENT_DIAL_BUDGET_MS) {
    log?.debug("ts2021 dropped: read after the client's dial timeout", { remote });
    socket.destroy();
    return;
  }
  if (req.method !== "POST" && req.method !== "GET") {
    return refuseHttp(socket, 405, "method not allowed");
  }
  const next = headerValue(req, "upgrade")?.toLowerCase() ?? "";
  if (next === "") return refuseHttp(socket, 400, "missing next protocol");
  if (isWebSocketUpgrade(next)) {
    return acceptWebSocketUpgrade(req, socket, head, {
      onHandshake: (initiation, ws) => finishHandshake(req, ws, initiation, undefined, opts, true),
      log,
    });
  }
  if (next !== UPGRADE_PROTOCOL) return refuseHttp(socket, 400, "unknown next protocol");

  const initB64 = headerValue(req, HANDSHAKE_HEADER);
  if (!initB64) return refuseHttp(socket, 400, "missing Tailscale handshake header");
  const initiation = decodeStdBase64(initB64);
  if (initiation === null) return refuseHttp(socket, 400, "invalid tailscale handshake header");

  (socket as { setNoDelay?: (v: boolean) => void }).setNoDelay?.(true);
  log?.trace("ts2021 upgrade", { remote });
  finishHandshake(req, socket, initiation, head, opts, false);
}

const SWITCHING_PROTOCOLS = "HTTP/1.1 101 Switching Protocols\r\n" +
  `Upgrade: ${UPGRADE_PROTOCOL}\r\n` +
  "Connection: upgrade\r\n\r\n";

/**
 * Runs the responder side of the handshake on `initiation` and, on success, writes the
 * response (plus early payload) to `stream` and hands over the NoiseConn. With `isWebSocket`
 * the 101 was already sent and `stream` carries the Noise bytes as WebSocket messages.
 */
function finishHandshake(
  req: IncomingMessage,
  stream: Duplex,
  initiation: Uint8Array,
  head: Uint8Array | undefined,
  opts: Ts2021UpgradeOptions,
  isWebSocket: boolean,
): void {
  const log = opts.log;
  const remote = clientAddress(req);
  const preamble = isWebSocket ? [] : [Buffer.from(SWITCHING_PROTOCOLS, "latin1")];
  const refuseNoise = (reason: string) => {
    stream.end(Buffer.concat([...preamble, encodeErrorFrame(reason)]));
  };

  const minCap = opts.minCapVersion ?? MIN_CAP_VERSION;
  // The version is cleartext in the header: refuse old clients before spending any crypto.
  if (
    initiation.length === INITIATION_LEN && initiation[2] === MSG_INITIATION &&
    ((initiation[3] << 8) | initiation[4]) === INITIATION_LEN - INITIATION_HEADER_LEN
  ) {
    const version = (initiation[0] << 8) | initiation[1];
    if (version < minCap) {
      log?.info("ts2021 refused: client too old", { remote, capver: version, min: minCap });
      return refuseNoise(
        `unsupported client version: capability version ${version} is older than ${minCap}`,
      );
    }
  }

  let hs;
  try {
    hs = respondToHandshake({
      serverPrivateKey: opts.serverPrivateKey,
      serverPublicKey: opts.serverPublicKey,
      serverKey: opts.serverKey,
      initiation,
    });
  } catch (e) {
    if (e instanceof NoiseFrameError) {
      log?.debug("ts2021 refused: bad initiation", { remote, error: e });
      return refuseNoise(e.message);
    }
    if (e instanceof NoiseHandshakeError) {
      log?.debug("ts2021 refused: handshake failed", { remote, error: e });
      return refuseNoise("handshake failed");
    }
    throw e;
  }

  const sealer = new RecordSealer(hs.sendKey, opts.sealEngine);
  const opener = new RecordOpener(hs.receiveKey, opts.sealEngine);
  let challenge: KeyPair | undefined;
  const out: Uint8Array[] = [...preamble, hs.response];
  if (!isWebSocket && opts.sendEarlyPayload !== false) {
    challenge = generateKeyPair();
    const early = encodeEarlyPayload({
      nodeKeyChallenge: formatKey(challenge.publicKey, "chalpub"),
    });
    out.push(sealer.seal(early));
  }
  // One write: the client reads the 101, the response and the first records back to back.
  stream.write(out.length === 1 ? out[0] : Buffer.concat(out));

  const conn = new NoiseConn({
    socket: stream,
    sealer,
    opener,
    peerPublicKey: hs.peerPublicKey,
    protocolVersion: hs.version,
    handshakeHash: hs.handshakeHash,
    head,
    writeBatch: opts.writeBatch,
  });
  const machine = formatKey(hs.peerPublicKey, "mkey");
  log?.debug("ts2021 connection", {
    remote,
    capver: hs.version,
    machine,
    transport: isWebSocket ? "websocket" : "http",
  });
  if (log) {
    conn.once("close", () => {
      if (conn.closeError) {
        log.debug("ts2021 connection failed", { remote, machine, error: conn.closeError });
      }
    });
  }
  opts.onConnection(conn, {
    request: req,
    challenge,
    transport: isWebSocket ? "websocket" : "http",
  });
}

function headerValue(req: IncomingMessage, name: string): string | undefined {
  const v = req.headers[name];
  return Array.isArray(v) ? v[0] : v;
}

/** Strict standard base64 with padding (Go's base64.StdEncoding), or null. */
export function decodeStdBase64(text: string): Uint8Array | null {
  if (text.length % 4 !== 0 || !/^[A-Za-z0-9+/]*={0,2}$/.test(text)) return null;
  return new Uint8Array(Buffer.from(text, "base64"));
}

const STATUS_TEXT: Record<number, string> = { 400: "Bad Request", 405: "Method Not Allowed" };

/** A plain HTTP/1.1 error (like Go's http.Error), then close. */
export function refuseHttp(socket: Duplex, status: number, reason: string): void {
  const body = reason + "\n";
  socket.end(
    `HTTP/1.1 ${status} ${STATUS_TEXT[status] ?? "Error"}\r\n` +
      "Content-Type: text/plain; charset=utf-8\r\n" +
      "X-Content-Type-Options: nosniff\r\n" +
      `Content-Length: ${Buffer.byteLength(body)}\r\n` +
      "Connection: close\r\n\r\n" + body,
  );
}
