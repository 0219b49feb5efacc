/** The two kinds of failure the CLI reports: bad invocation (exit 2) and failed work (exit 1). */

/** The command line itself is wrong (unknown flag, missing argument): exit 2 with a usage hint. */
export class UsageError extends Error {
  override name = "UsageError";
  /** The command path whose help the hint points at, e.g. ["users", "create"]. */
  readonly path: string[];
  constructor(message: string, path: string[] = []) {
    super(message);
    this.path = path;
  }
}

/** The command ran but could not do its job; the message is meant for the user as is. */
export class CliError extends Error {
  override name = "CliError";
  /** Extra lines worth showing (e.g. every configuration problem). */
  readonly details: string[];
  constructor(message: string, details: string[] = []) {
    super(message);
    this.details = details;
  }
}
