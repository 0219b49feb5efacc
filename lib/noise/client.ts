/**
 * The initiator side over TCP, as tailscaled dials: `POST /ts2021` with the initiation in
 * X-Tailscale-Handshake, expect `101` with `Upgrade: tailscale-control-protocol` (exact), read
 * the 51-byte response (or a type-3 error frame), then the optional early payload. Used by our
 * in-process tests and tools; the result plugs into
 * `http2.connect(url, { createConnection: () => conn })`.
 */
import { connect as netConnect, type Socket } from "node:net";
import { NoiseConn } from "./conn.ts";
import { type EarlyNoise, readEarlyPayload } from "./early_payload.ts";
import { startClientHandshake } from "./handshake.ts";
import { HEADER_LEN, MSG_ERROR, MSG_RESPONSE, RESPONSE_LEN } from "./messages.ts";
import { RecordOpener, RecordSealer } from "./records.ts";
import { UPGRADE_PROTOCOL } from "./upgrade.ts";

export interface NoiseClientOptions {
  host: string;
  port: number;
  /** The server's Noise public key (from GET /key), raw 32 bytes. */
  serverPublicKey: Uint8Array;
  /** This machine's private key, raw 32 bytes. */
  machinePrivateKey: Uint8Array;
  /** Sent in the initiation header and mixed into the prologue. */
  capVersion: number;
  /** Default "/ts2021". */
  path?: string;
  /** Default "POST" (what tailscaled sends). */
  method?: "POST" | "GET";
  /** Host header; default `host:port`. */
  hostHeader?: string;
  /** Whole-dial limit in milliseconds (TCP, upgrade, handshake, early payload). Default 10 s. */
  timeoutMs?: number;
  signal?: AbortSignal;
}

export interface NoiseClientConnection {
  /** Plaintext stream; HTTP/2 with prior knowledge goes on it. */
  conn: NoiseConn;
  /** The server's early payload, or null when it went straight to HTTP/2. */
  earlyPayload: EarlyNoise | null;
}

/** Failure to establish the Noise connection (HTTP status, server error frame, handshake). */
export class NoiseDialError extends Error {
  override name = "NoiseDialError";
}

const MAX_RESPONSE_HEADER = 16 << 10;

export async function noiseClientConnect(opts: NoiseClientOptions): Promise<NoiseClientConnection> {
  const timeoutMs = opts.timeoutMs ?? 10_000;
  const timeout = AbortSignal.timeout(timeoutMs);
  const signal = opts.signal ? AbortSignal.any([opts.signal, timeout]) : timeout;
  const hs = startClientHandshake({
    machinePrivateKey: opts.machinePrivateKey,
    serverPublicKey: opts.serverPublicKey,
    version: opts.capVersion,
  });

  const socket = netConnect({ host: opts.host, port: opts.port });
  socket.setNoDelay(true);
  const onAbort = () => socket.destroy(new NoiseDialError(`noise dial aborted: ${signal.reason}`));
  signal.addEventListener("abort", onAbort);
  try {
    const request = `${opts.method ?? "POST"} ${opts.path ?? "/ts2021"} HTTP/1.1\r\n` +
      `Host: ${opts.hostHeader ?? `${opts.host}:${opts.port}`}\r\n` +
      `Upgrade: ${UPGRADE_PROTOCOL}\r\n` +
      "Connection: upgrade\r\n" +
      `X-Tailscale-Handshake: ${Buffer.from(hs.initiation).toString("base64")}\r\n` +
      "Content-Length: 0\r\n\r\n";
    socket.write(request);

    const { response, rest } = await readUpgradeResponse(socket);
    const result = (() => {
      try {
        return hs.finish(response);
      } catch (e) {
        throw new NoiseDialError(`noise handshake failed: ${(e as Error).message}`);
      }
    })();
    const conn = new NoiseConn({
      socket,
      sealer: new RecordSealer(result.sendKey),
      opener: new RecordOpener(result.receiveKey),
      peerPublicKey: result.peerPublicKey,
      protocolVersion: result.version,
      handshakeHash: result.handshakeHash,
      head: rest,
    });
    try {
      const earlyPayload = await readEarlyPayload(conn, signal);
      return { conn, earlyPayload };
    } catch (e) {
      conn.destroy();
      throw e;
    }
  } catch (e) {
    socket.destroy();
    throw e;
  } finally {
    signal.removeEventListener("abort", onAbort);
  }
}

/**
 * Reads the HTTP/1.1 101 head and the 51-byte handshake response; returns any bytes after it
 * (early records). Leaves the socket paused with no listeners of ours.
 */
function readUpgradeResponse(socket: Socket): Promise<{ response: Uint8Array; rest: Buffer }> {
  return new Promise((resolve, reject) => {
    let buf = Buffer.alloc(0);
    let bodyStart = -1;
    const cleanup = () => {
      socket.off("data", onData);
      socket.off("end", onEnd);
      socket.off("error", onError);
      socket.off("close", onEnd);
      socket.pause();
    };
    const fail = (e: Error) => {
      cleanup();
      reject(e);
    };
    const onError = (e: Error) =>
      fail(e instanceof NoiseDialError ? e : new NoiseDialError(e.message));
    const onEnd = () => fail(new NoiseDialError("connection closed during the ts2021 upgrade"));
    const onData = (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      if (bodyStart < 0) {
        const end = buf.indexOf("\r\n\r\n");
        if (end < 0) {
          if (buf.length > MAX_RESPONSE_HEADER) {
            fail(new NoiseDialError("HTTP response head too long"));
          }
          return;
        }
        const headText = buf.subarray(0, end).toString("latin1");
        const [statusLine, ...lines] = headText.split("\r\n");
        const status = /^HTTP\/1\.[01] (\d{3})/.exec(statusLine)?.[1];
        if (status !== "101") {
          const body = buf.subarray(end + 4, end + 4 + 200).toString("utf8").trim();
          return fail(
            new NoiseDialError(
              `unexpected HTTP response: ${statusLine}${body ? ` (${body})` : ""}`,
            ),
          );
        }
        const upgrade = lines.find((l) => /^upgrade:/i.test(l))?.slice(8).trim();
        if (upgrade !== UPGRADE_PROTOCOL) {
          return fail(new NoiseDialError(`unexpected Upgrade header in 101: ${upgrade}`));
        }
        bodyStart = end + 4;
      }
      const body = buf.subarray(bodyStart);
      if (body.length < HEADER_LEN) return;
      const type = body[0];
      const length = (body[1] << 8) | body[2];
      if (type === MSG_ERROR) {
        if (body.length < HEADER_LEN + length) return;
        const text = body.subarray(HEADER_LEN, HEADER_LEN + length).toString("latin1");
        return fail(new NoiseDialError(`server error: ${JSON.stringify(text)}`));
      }
      if (type !== MSG_RESPONSE) {
        return fail(new NoiseDialError(`unexpected response message type ${type}`));
      }
      if (body.length < RESPONSE_LEN) return;
      cleanup();
      resolve({ response: body.subarray(0, RESPONSE_LEN), rest: body.subarray(RESPONSE_LEN) });
    };
    socket.on("data", onData);
    socket.on("end", onEnd);
    socket.on("close", onEnd);
    socket.on("error", onError);
  });
}
