/**
 * Turns a failed call into one sentence a user can act on: the server's own message for refused
 * requests, and a plain explanation for "could not talk to the server at all".
 */
import { Code, ConnectError } from "@connectrpc/connect";
import { formatDuration } from "../config/duration.ts";
import { type CliTarget, describeTarget } from "./transport.ts";

const UNREACHABLE = new Set([
  "ENOENT",
  "ECONNREFUSED",
  "ENOTSOCK",
  "ECONNRESET",
  "EPIPE",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "ETIMEDOUT",
  "ERR_HTTP2_ERROR",
  "ERR_HTTP2_GOAWAY_SESSION",
  "ERR_HTTP2_STREAM_CANCEL",
  "ERR_HTTP2_SESSION_ERROR",
]);

const TLS_PROBLEM =
  /CERT|SELF_SIGNED|UNABLE_TO_VERIFY|ERR_TLS|ERR_SSL|EPROTO|InvalidData|certificate/i;

/** The error codes along an error's cause chain (node style `code`, Deno style `name`). */
function causeCodes(e: unknown): string[] {
  const codes: string[] = [];
  let current: unknown = e;
  for (let depth = 0; current && depth < 5; depth++) {
    const err = current as { code?: unknown; name?: unknown; message?: unknown; cause?: unknown };
    if (typeof err.code === "string") codes.push(err.code);
    if (typeof err.name === "string" && err.name !== "Error") codes.push(err.name);
    if (typeof err.message === "string") codes.push(err.message);
    current = err.cause;
  }
  return codes;
}

export function describeCallError(e: unknown, target: CliTarget, timeoutMs: number): string {
  const where = describeTarget(target);
  const err = ConnectError.from(e);
  const codes = causeCodes(err.cause ?? e);
  if (codes.includes("EACCES") || codes.includes("PermissionDenied")) {
    return `permission denied connecting to ${where}: do you have access to it?`;
  }
  if (codes.includes("ENOTFOUND") || codes.includes("EAI_AGAIN")) {
    return `cannot resolve the host of ${where}`;
  }
  if (target.kind !== "unix" && codes.some((c) => TLS_PROBLEM.test(c))) {
    return `TLS with ${where} failed (${codes.find((c) => TLS_PROBLEM.test(c))}); ` +
      "fix the certificate or set cli.insecure to skip verification";
  }
  if (err.code === Code.DeadlineExceeded) {
    return `no answer from ${where} within ${formatDuration(timeoutMs)} (cli.timeout)`;
  }
  if (
    codes.some((c) => UNREACHABLE.has(c)) ||
    (err.code === Code.Unavailable && err.cause !== undefined)
  ) {
    return `cannot reach the server at ${where}: is it running?`;
  }
  if (err.code === Code.Unauthenticated) {
    return `the server refused the API key (${err.rawMessage}); ` +
      "check cli.api_key / HEADSCALE_CLI_API_KEY";
  }
  if (err.code === Code.Unimplemented && /is not implemented$/.test(err.rawMessage)) {
    return `the server at ${where} does not offer this call (is it a headscale server?)`;
  }
  return err.rawMessage || `request failed (${Code[err.code]})`;
}
