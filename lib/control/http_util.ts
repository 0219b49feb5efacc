/**
 * Small helpers for the HTTP/2 handlers inside Noise: bounded JSON bodies and error replies.
 * Anyone who completes a Noise handshake reaches these handlers, so every body is bounded.
 */
import {
  BodyTooLargeError,
  type H2Request,
  type H2Response,
  RequestAbortedError,
} from "../h2/server.ts";

/** A request that gets a non-200 answer; the message is sent as the plain-text body. */
export class HttpError extends Error {
  override name = "HttpError";
  constructor(readonly status: number, message: string) {
    super(message);
  }
}

/** Reads the whole body, refusing (413) more than `limit` bytes. */
export async function readBody(req: H2Request, limit: number): Promise<Uint8Array> {
  try {
    return await req.body(limit);
  } catch (e) {
    if (e instanceof BodyTooLargeError) throw new HttpError(413, e.message);
    if (e instanceof RequestAbortedError) throw new HttpError(400, "request aborted");
    throw e;
  }
}

/** Parses a JSON object body; 400 with the reason when it is not one. */
export async function readJsonObject(
  req: H2Request,
  limit: number,
): Promise<Record<string, unknown>> {
  const body = await readBody(req, limit);
  let value: unknown;
  try {
    value = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(body));
  } catch (e) {
    throw new HttpError(400, `request body is not valid JSON: ${(e as Error).message}`);
  }
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    throw new HttpError(400, "request body must be a JSON object");
  }
  return value as Record<string, unknown>;
}

export function sendJson(res: H2Response, status: number, body: unknown): void {
  if (res.headersSent || res.closed) return;
  const text = JSON.stringify(body);
  res.writeHead(status, { "content-type": "application/json; charset=utf-8" });
  res.end(text);
}

export function sendText(res: H2Response, status: number, text: string): void {
  if (res.headersSent || res.closed) {
    if (!res.ended && !res.closed) res.end();
    return;
  }
  res.writeHead(status, { "content-type": "text/plain; charset=utf-8" });
  res.end(text.endsWith("\n") ? text : text + "\n");
}
