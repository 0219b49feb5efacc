/**
 * Errors the state layer throws for bad requests. The API maps them to gRPC codes and HTTP
 * statuses (InvalidArgument/400, NotFound/404, AlreadyExists or FailedPrecondition/409).
 */

export class InvalidArgumentError extends Error {
  override name = "InvalidArgumentError";
}

export class NotFoundError extends Error {
  override name = "NotFoundError";
}

export class ConflictError extends Error {
  override name = "ConflictError";
}

/** A pre-auth key or API key was refused; the message says why (never the key itself). */
export class KeyRejectedError extends Error {
  override name = "KeyRejectedError";
}
