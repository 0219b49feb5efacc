/**
 * Serves HeadscaleService: Connect, gRPC and gRPC-Web through connect-node, and REST under
 * /api/v1. Over TCP every call needs `Authorization: Bearer <API key>` and fails closed; over the
 * unix socket the caller is trusted (file permissions guard it), as in headscale.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Http2ServerRequest, Http2ServerResponse } from "node:http2";
import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { HeadscaleService } from "../../gen/headscale/v1/headscale_pb.ts";
import type { Logger } from "../log/log.ts";
import type { State } from "../state/state.ts";
import { createHeadscaleService, type ServiceDeps } from "./service.ts";
import { createRestHandler, MAX_BODY_BYTES } from "./rest.ts";
import { lingeringClose } from "../http/limits.ts";
import { clientAddress } from "../net/client_addr.ts";

export const REST_PREFIX = "/api/v1/";
export const RPC_PREFIX = `/${HeadscaleService.typeName}/`;

type AnyRequest = IncomingMessage | Http2ServerRequest;
type AnyResponse = ServerResponse | Http2ServerResponse;
export type ApiHandler = (req: AnyRequest, res: AnyResponse) => void;

function bearer(header: string | string[] | undefined | null): string | null {
  const value = Array.isArray(header) ? header[0] : header;
  const m = /^Bearer\s+(\S+)\s*$/i.exec(value ?? "");
  return m ? m[1] : null;
}

/** Refuses any call without a current API key, before the method runs. */
export function apiKeyInterceptor(state: State): Interceptor {
  return (next) => async (req) => {
    const key = bearer(req.header.get("authorization"));
    if (!key || !(await state.checkApiKey(key))) {
      throw new ConnectError("invalid or missing API key", Code.Unauthenticated);
    }
    return next(req);
  };
}

export interface ApiServerOptions extends ServiceDeps {
  log: Logger;
  /** True for TCP listeners: every call must carry a valid API key. */
  requireApiKey: boolean;
}

/** One handler for both the RPC paths and /api/v1; anything else is answered 404. */
export function createApiHandler(opts: ApiServerOptions): ApiHandler {
  const impl = createHeadscaleService(opts);
  const rpc = connectNodeAdapter({
    routes: (router) => router.service(HeadscaleService, impl),
    interceptors: opts.requireApiKey ? [apiKeyInterceptor(opts.state)] : [],
    // The same limit as REST: a larger message is ResourceExhausted naming it (connect's default
    // would read up to 4 GiB).
    readMaxBytes: MAX_BODY_BYTES,
  });
  const rest = createRestHandler({
    service: HeadscaleService,
    impl: impl as unknown as Record<string, unknown>,
    log: opts.log,
    authorize: opts.requireApiKey
      ? async (req) => {
        const key = bearer(req.headers.authorization);
        if (key && await opts.state.checkApiKey(key)) return null;
        opts.log.info("API request refused: invalid or missing API key", {
          remote: clientAddress(req as IncomingMessage),
        });
        return new ConnectError("invalid or missing API key", Code.Unauthenticated);
      }
      : undefined,
  });
  return (req, res) => {
    const path = (req.url ?? "/").split("?")[0];
    if (path.startsWith(REST_PREFIX)) {
      void rest(req as IncomingMessage, res as ServerResponse);
    } else {
      // A message over readMaxBytes is refused before its body is read to the end; on HTTP/1.1
      // the unread rest would stall the connection for the client's next call: close it.
      const socket = req.socket;
      if (req.httpVersionMajor === 1) {
        res.once("finish", () => {
          if (!req.complete && !socket.destroyed) lingeringClose(socket, "");
        });
      }
      rpc(req, res);
    }
  };
}
