/**
 * The optional "early payload" a server sends first inside Noise, before HTTP/2:
 *   ff ff ff 54 53 ("\xff\xff\xffTS") · u32 BE length · JSON tailcfg.EarlyNoise
 * The 9-byte header cannot be mistaken for an HTTP/2 frame header, so a client that reads
 * 9 bytes and finds no magic treats them as the start of HTTP/2.
 */
import type { Readable } from "node:stream";
import { parseKey } from "../tailcfg/keys.ts";

export const EARLY_PAYLOAD_MAGIC = Uint8Array.of(0xff, 0xff, 0xff, 0x54, 0x53);
export const EARLY_PAYLOAD_HEADER_LEN = 9;
/** The client refuses longer payloads. */
export const MAX_EARLY_PAYLOAD_LEN = 10 << 20;

/** tailcfg.EarlyNoise. */
export interface EarlyNoise {
  /** `chalpub:<64 hex>`; omitted rather than "" (an empty key breaks the client). */
  nodeKeyChallenge?: string;
}

export class EarlyPayloadError extends Error {
  override name = "EarlyPayloadError";
}

export function encodeEarlyPayload(payload: EarlyNoise): Uint8Array {
  const json = new TextEncoder().encode(JSON.stringify(payload));
  const out = new Uint8Array(EARLY_PAYLOAD_HEADER_LEN + json.length);
  out.set(EARLY_PAYLOAD_MAGIC, 0);
  new DataView(out.buffer).setUint32(5, json.length);
  out.set(json, EARLY_PAYLOAD_HEADER_LEN);
  return out;
}

function hasMagic(header: Uint8Array): boolean {
  return EARLY_PAYLOAD_MAGIC.every((b, i) => header[i] === b);
}

/** Reads exactly n bytes from a paused-mode readable, or null if it ends first. */
function readExactly(stream: Readable, n: number, signal?: AbortSignal): Promise<Buffer | null> {
  return new Promise((resolve, reject) => {
    const cleanup = () => {
      stream.off("readable", tryRead);
      stream.off("end", onEnd);
      stream.off("close", onEnd);
      stream.off("error", onError);
      signal?.removeEventListener("abort", onAbort);
    };
    const tryRead = () => {
      const chunk = stream.read(n) as Buffer | null;
      if (chunk !== null) {
        cleanup();
        resolve(chunk);
      } else if (stream.readableEnded) onEnd();
    };
    const onEnd = () => {
      cleanup();
      resolve(null);
    };
    const onError = (e: Error) => {
      cleanup();
      reject(e);
    };
    const onAbort = () => {
      cleanup();
      reject(signal?.reason ?? new Error("aborted"));
    };
    stream.on("readable", tryRead);
    stream.on("end", onEnd);
    stream.on("close", onEnd);
    stream.on("error", onError);
    signal?.addEventListener("abort", onAbort);
    tryRead();
  });
}

/**
 * Client side: consumes the early payload if the stream starts with one and returns it, or
 * puts the first bytes back (unshift) and returns null when the server went straight to HTTP/2.
 * Call before handing the stream to an HTTP/2 client.
 */
export async function readEarlyPayload(
  stream: Readable,
  signal?: AbortSignal,
): Promise<EarlyNoise | null> {
  const header = await readExactly(stream, EARLY_PAYLOAD_HEADER_LEN, signal);
  if (header === null) throw new EarlyPayloadError("connection ended before the first 9 bytes");
  if (!hasMagic(header)) {
    stream.unshift(header);
    return null;
  }
  const length = header.readUInt32BE(5);
  if (length > MAX_EARLY_PAYLOAD_LEN) throw new EarlyPayloadError("invalid early payload length");
  const body = length === 0 ? Buffer.alloc(0) : await readExactly(stream, length, signal);
  if (body === null) throw new EarlyPayloadError("connection ended inside the early payload");
  let parsed: unknown;
  try {
    parsed = JSON.parse(body.toString("utf8"));
  } catch {
    throw new EarlyPayloadError("early payload is not JSON");
  }
  if (parsed === null || typeof parsed !== "object" || Array.isArray(parsed)) {
    throw new EarlyPayloadError("early payload is not a JSON object");
  }
  const challenge = (parsed as Record<string, unknown>).nodeKeyChallenge;
  if (challenge !== undefined) {
    if (typeof challenge !== "string") {
      throw new EarlyPayloadError("nodeKeyChallenge is not a string");
    }
    try {
      parseKey(challenge, "chalpub");
    } catch (e) {
      throw new EarlyPayloadError(`bad nodeKeyChallenge: ${(e as Error).message}`);
    }
  }
  return parsed as EarlyNoise;
}
