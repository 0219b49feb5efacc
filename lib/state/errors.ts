/**
 * Errors the state layer throws. The API maps them to gRPC codes and HTTP statuses
 * (InvalidArgument/400, NotFound/404, AlreadyExists/409, FailedPrecondition/400,
 * Unavailable/503).
 */

export class InvalidArgumentError extends Error {
  override name = "InvalidArgumentError";
}

export class NotFoundError extends Error {
  override name = "NotFoundError";
}

/** The request contradicts the tailnet as it is (a user that still owns nodes, a key in use). */
export class ConflictError extends Error {
  override name = "ConflictError";
}

/** Something with that name (or key, or address) exists already. */
export class AlreadyExistsError extends ConflictError {
  override name = "AlreadyExistsError";
}

/**
 * The database could not take the write (full, read-only, unreachable): nothing changed, in
 * memory or on disk, and the same request can succeed once the database is back. The message
 * names the database and the cause, never a secret.
 */
export class UnavailableError extends Error {
  override name = "UnavailableError";
}

/** A pre-auth key or API key was refused; the message says why (never the key itself). */
export class KeyRejectedError extends Error {
  override name = "KeyRejectedError";
}
