/**
 * The REST face of HeadscaleService, derived from the proto's google.api.http annotations (as
 * grpc-gateway does for headscale), so paths, methods and JSON shapes are written only once.
 * JSON is protojson: lowerCamelCase names, every field present, uint64 as strings.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import {
  create,
  type DescMethod,
  type DescService,
  fromJson,
  getOption,
  type JsonObject,
  toJson,
} from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { http as httpRule } from "../../gen/google/api/annotations_pb.ts";
import type { Logger } from "../log/log.ts";
import { toConnectError } from "./service.ts";
import { closeAfterResponse } from "../http/limits.ts";

/** Largest request body the API reads (REST and Connect/gRPC alike). */
export const MAX_BODY_BYTES = 1 << 20;

interface RestRoute {
  httpMethod: string;
  pattern: RegExp;
  params: string[];
  body: string;
  method: DescMethod;
}

type UnaryImpl = (req: unknown, ctx: unknown) => Promise<unknown> | unknown;

/** grpc-gateway's mapping of gRPC codes to HTTP statuses. */
export function httpStatusFor(code: Code): number {
  switch (code) {
    case Code.InvalidArgument:
    case Code.FailedPrecondition:
    case Code.OutOfRange:
      return 400;
    case Code.Unauthenticated:
      return 401;
    case Code.PermissionDenied:
      return 403;
    case Code.NotFound:
      return 404;
    case Code.AlreadyExists:
    case Code.Aborted:
      return 409;
    case Code.ResourceExhausted:
      return 429;
    case Code.Canceled:
      return 499;
    case Code.Unimplemented:
      return 501;
    case Code.Unavailable:
      return 503;
    case Code.DeadlineExceeded:
      return 504;
    default:
      return 500;
  }
}

export function restRoutes(service: DescService): RestRoute[] {
  const routes: RestRoute[] = [];
  for (const method of service.methods) {
    const rule = getOption(method, httpRule);
    const { case: verb, value: path } = rule.pattern;
    if (!verb || typeof path !== "string") continue;
    const params: string[] = [];
    // "/api/v1/node/{node_id}/rename/{new_name}" → /^\/api\/v1\/node\/([^/]+)\/rename\/([^/]+)$/
    const source = path.replace(/[.*+?^$()|[\]\\]/g, "\\$&").replace(
      /\{([a-z_]+)\}/g,
      (_, name) => {
        params.push(name);
        return "([^/]+)";
      },
    );
    routes.push({
      httpMethod: verb.toUpperCase(),
      pattern: new RegExp(`^${source}$`),
      params,
      body: rule.body,
      method,
    });
  }
  return routes;
}

/** "1048576 bytes (1 MiB)" */
function describeBytes(n: number): string {
  return n % (1 << 20) === 0 ? `${n} bytes (${n >> 20} MiB)` : `${n} bytes`;
}

/**
 * A request body over the limit: answered 413, then the connection is closed. Not a
 * ConnectError subclass: `instanceof` on those matches any ConnectError.
 */
export class BodyTooLargeError extends Error {
  override name = "BodyTooLargeError";
  constructor(size: number | null, limit: number) {
    super(
      size === null
        ? `request body is over the limit of ${describeBytes(limit)}`
        : `request body is ${size} bytes; the limit is ${describeBytes(limit)}`,
    );
  }
}

/** The declared Content-Length, or null (chunked, or none). */
function declaredLength(req: IncomingMessage): number | null {
  const value = req.headers["content-length"];
  return value !== undefined && /^\d+$/.test(value) ? Number(value) : null;
}

/**
 * Reads the body up to `limit` bytes. A chunked body that grows past it stops being read: the
 * caller answers 413 and the connection closes after the answer (never before it is flushed).
 */
function readBody(req: IncomingMessage, limit: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (c: Buffer) => {
      size += c.length;
      if (size > limit) {
        req.off("data", onData);
        req.pause();
        reject(new BodyTooLargeError(null, limit));
        return;
      }
      chunks.push(c);
    };
    req.on("data", onData);
    req.on("end", () => resolve(Buffer.concat(chunks).toString("utf8")));
    req.on("error", reject);
    // A body that stops arriving is answered 408 by the listener; the request then just closes.
    req.on("close", () => {
      if (!req.complete) reject(new ConnectError("request body incomplete", Code.Canceled));
    });
  });
}

function sendError(res: ServerResponse, e: ConnectError): void {
  res.writeHead(httpStatusFor(e.code), { "content-type": "application/json" });
  res.end(JSON.stringify({ code: e.code, message: e.rawMessage, details: [] }));
}

/** 413 with the REST error shape (code ResourceExhausted); the connection closes after it. */
function sendTooLarge(res: ServerResponse, e: BodyTooLargeError): void {
  // The rest of the body is not read: the connection cannot carry another request.
  if (res.req.httpVersionMajor === 1) closeAfterResponse(res);
  const body = JSON.stringify({ code: Code.ResourceExhausted, message: e.message, details: [] });
  res.writeHead(413, {
    "content-type": "application/json",
    "content-length": Buffer.byteLength(body),
  });
  res.end(body);
}

/** Sets a field from a path or query value, by proto name, as protojson would read it. */
function setField(target: JsonObject, method: DescMethod, name: string, value: string): void {
  const field = method.input.fields.find((f) => f.name === name || f.jsonName === name);
  if (!field) return; // grpc-gateway ignores unknown query parameters.
  if (field.fieldKind === "list") {
    const list = (target[field.name] as string[] | undefined) ?? [];
    list.push(value);
    target[field.name] = list;
  } else if (field.fieldKind === "scalar" && field.scalar === 8 /* bool */) {
    target[field.name] = value === "true" || value === "1";
  } else {
    target[field.name] = value;
  }
}

export interface RestHandlerOptions {
  service: DescService;
  impl: Record<string, unknown>;
  log: Logger;
  /** Decides whether the request may run; null = allowed, else the refusal. */
  authorize?: (req: IncomingMessage) => Promise<ConnectError | null>;
}

/** A node:http handler for `/api/v1/...`. */
export function createRestHandler(opts: RestHandlerOptions) {
  const routes = restRoutes(opts.service);
  return async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    try {
      // Refused before reading a byte of it, when the size is declared.
      const length = declaredLength(req);
      if (length !== null && length > MAX_BODY_BYTES) {
        return sendTooLarge(res, new BodyTooLargeError(length, MAX_BODY_BYTES));
      }
      const denied = opts.authorize ? await opts.authorize(req) : null;
      if (denied) return sendError(res, denied);

      const url = new URL(req.url ?? "/", "http://api");
      let pathMatched = false;
      for (const route of routes) {
        const m = route.pattern.exec(url.pathname);
        if (!m) continue;
        pathMatched = true;
        if (route.httpMethod !== req.method) continue;

        let input: JsonObject = {};
        if (route.body === "*") {
          const text = await readBody(req, MAX_BODY_BYTES);
          if (text.trim() !== "") {
            let parsed: unknown;
            try {
              parsed = JSON.parse(text);
            } catch {
              throw new ConnectError("request body is not valid JSON", Code.InvalidArgument);
            }
            if (parsed === null || typeof parsed !== "object" || Array.isArray(parsed)) {
              throw new ConnectError("request body must be a JSON object", Code.InvalidArgument);
            }
            input = parsed as JsonObject;
          }
        } else {
          for (const [k, v] of url.searchParams) setField(input, route.method, k, v);
        }
        route.params.forEach((p, i) =>
          setField(input, route.method, p, decodeURIComponent(m[i + 1]))
        );

        let message;
        try {
          message = fromJson(route.method.input, input, { ignoreUnknownFields: true });
        } catch (e) {
          throw new ConnectError(`invalid request: ${(e as Error).message}`, Code.InvalidArgument);
        }
        const fn = opts.impl[route.method.localName] as UnaryImpl;
        const out = await fn(message, {
          requestHeader: new Headers(),
          signal: new AbortController().signal,
        });
        const json = toJson(route.method.output, create(route.method.output, out as never), {
          alwaysEmitImplicit: true,
        });
        res.writeHead(200, { "content-type": "application/json" });
        res.end(JSON.stringify(json));
        return;
      }
      sendError(
        res,
        pathMatched
          ? new ConnectError("method not allowed", Code.Unimplemented)
          : new ConnectError(`no API route ${url.pathname}`, Code.NotFound),
      );
    } catch (e) {
      if (e instanceof BodyTooLargeError && !res.headersSent) return sendTooLarge(res, e);
      const err = toConnectError(e);
      if (err.code === Code.Internal) {
        opts.log.error("API request failed", { path: req.url, error: e });
      }
      if (!res.headersSent) sendError(res, err);
      else if (!res.writableEnded) res.destroy();
    }
  };
}
