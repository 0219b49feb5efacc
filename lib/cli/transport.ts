/**
 * How the CLI reaches the server. Locally: the Connect protocol over HTTP/1.1 on the unix socket
 * (`unix_socket`, trusted, no key). Remotely (`cli.address` / HEADSCALE_CLI_ADDRESS): gRPC over
 * HTTP/2 + TLS to host:port, as headscale's CLI dials grpc_listen_addr, or the Connect protocol
 * when the address is a URL; both send `Authorization: Bearer <cli.api_key>`.
 */
import type { Interceptor, Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import type { Config } from "../config/config.ts";
import { CliError } from "./errors.ts";

export type CliTarget =
  | { kind: "unix"; socketPath: string }
  | { kind: "grpc"; address: string; apiKey: string; insecure: boolean }
  | { kind: "connect"; baseUrl: string; apiKey: string; insecure: boolean };

const HOST_PORT = /^(\[[0-9a-fA-F:.%\w]+\]|[^\s:/[\]]+):(\d{1,5})$/;
const LOOPBACK = /^(localhost|127(?:\.\d{1,3}){3}|\[::1\])$/i;

/** Picks the target from the configuration; throws CliError for an unusable combination. */
export function resolveTarget(config: Pick<Config, "cli" | "unixSocket">): CliTarget {
  const { address, apiKey, insecure } = config.cli;
  if (address === "") return { kind: "unix", socketPath: config.unixSocket };
  if (apiKey === "") {
    throw new CliError(
      "cli.address is set, so an API key is needed: set cli.api_key or HEADSCALE_CLI_API_KEY",
    );
  }
  if (/^https?:\/\//i.test(address)) {
    let url: URL;
    try {
      url = new URL(address);
    } catch {
      throw new CliError(`cli.address "${address}" is not a valid URL`);
    }
    if (url.protocol === "http:" && !insecure && !LOOPBACK.test(url.hostname)) {
      throw new CliError(
        `refusing to send the API key over plain http to ${url.host}; use https:// or set cli.insecure`,
      );
    }
    return { kind: "connect", baseUrl: address.replace(/\/+$/, ""), apiKey, insecure };
  }
  if (!HOST_PORT.test(address)) {
    throw new CliError(`cli.address "${address}" must be host:port or an https:// URL`);
  }
  return { kind: "grpc", address, apiKey, insecure };
}

/** Where the target is, for messages ("cannot reach the server at …"). */
export function describeTarget(target: CliTarget): string {
  switch (target.kind) {
    case "unix":
      return target.socketPath;
    case "grpc":
      return target.address;
    case "connect":
      return target.baseUrl;
  }
}

function bearer(apiKey: string): Interceptor {
  return (next) => (req) => {
    req.header.set("authorization", `Bearer ${apiKey}`);
    return next(req);
  };
}

/** A transport for `createClient(HeadscaleService, …)`; `timeoutMs` 0 means no deadline. */
export function createCliTransport(target: CliTarget, timeoutMs: number): Transport {
  const defaultTimeoutMs = timeoutMs > 0 ? timeoutMs : undefined;
  switch (target.kind) {
    case "unix":
      return createConnectTransport({
        baseUrl: "http://localhost",
        httpVersion: "1.1",
        nodeOptions: { socketPath: target.socketPath },
        defaultTimeoutMs,
      });
    case "connect": {
      const tls = target.baseUrl.startsWith("https:");
      return createConnectTransport({
        baseUrl: target.baseUrl,
        httpVersion: "1.1",
        nodeOptions: tls ? { rejectUnauthorized: !target.insecure } : {},
        interceptors: [bearer(target.apiKey)],
        defaultTimeoutMs,
      });
    }
    case "grpc":
      return createGrpcTransport({
        baseUrl: `https://${target.address}`,
        nodeOptions: { rejectUnauthorized: !target.insecure },
        interceptors: [bearer(target.apiKey)],
        defaultTimeoutMs,
      });
  }
}
