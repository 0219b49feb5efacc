/**
 * HeadscaleService called in-process: the admin UI changes the tailnet through exactly the calls
 * the API and the CLI make (lib/api/service.ts), so validation, errors and effects are the same.
 * Each method takes the request's fields (as `create()` does) and resolves with the response.
 */
import {
  create,
  type DescMessage,
  type DescMethodUnary,
  type MessageInitShape,
  type MessageShape,
} from "@bufbuild/protobuf";
import { ConnectError, type HandlerContext, type ServiceImpl } from "@connectrpc/connect";
import { HeadscaleService } from "../../gen/headscale/v1/headscale_pb.ts";

type Methods = typeof HeadscaleService.method;

export type InProcessApi = {
  [K in keyof Methods]: Methods[K] extends
    DescMethodUnary<infer I extends DescMessage, infer O extends DescMessage>
    ? (init?: MessageInitShape<I>) => Promise<MessageShape<O>>
    : never;
};

type AnyImpl = Record<string, (req: unknown, ctx: HandlerContext) => unknown>;

export function inProcessApi(impl: ServiceImpl<typeof HeadscaleService>): InProcessApi {
  const out: Record<string, unknown> = {};
  // The service's methods read only their request; no call context exists in-process.
  const noContext = undefined as unknown as HandlerContext;
  for (const method of HeadscaleService.methods) {
    const fn = (impl as unknown as AnyImpl)[method.localName];
    out[method.localName] = async (init?: Record<string, unknown>) =>
      await fn(create(method.input as DescMessage, init ?? {}), noContext);
  }
  return out as InProcessApi;
}

/** What went wrong, as the CLI would print it (the API's message, without the gRPC code). */
export function errorMessage(e: unknown): string {
  if (e instanceof ConnectError) return e.rawMessage;
  if (e instanceof Error) return e.message;
  return String(e);
}
