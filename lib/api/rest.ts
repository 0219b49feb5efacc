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

const MAX_BODY = 1 << 20;

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

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on("data", (c: Buffer) => {
      size += c.length;
      if (size > MAX_BODY) {
        reject(new ConnectError("request body too large", Code.ResourceExhausted));
        req.destroy();
        return;
      }
      chunks.push(c);
    });
    req.on("end", () => resolve(Buffer.concat(chunks).toString("utf8")));
    req.on("error", reject);
  });
}

function sendError(res: ServerResponse, e: ConnectError): void {
  const status = e.code === Code.ResourceExhausted && e.rawMessage.includes("too large")
    ? 413
    : httpStatusFor(e.code);
  res.writeHead(status, { "content-type": "application/json" });
  res.end(JSON.stringify({ code: e.code, message: e.rawMessage, details: [] }));
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
          const text = await readBody(req);
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
      const err = toConnectError(e);
      if (err.code === Code.Internal) {
        opts.log.error("API request failed", { path: req.url, error: e });
      }
      if (!res.headersSent) sendError(res, err);
      else res.destroy();
    }
  };
}
