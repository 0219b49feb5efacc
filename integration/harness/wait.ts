/** Polling until something becomes true, for conditions that settle asynchronously. */

export interface WaitOptions {
  /** Pause between attempts. Default 250 ms. */
  intervalMs?: number;
  /** What is being waited for, used in the timeout error. */
  description?: string;
}

/** Thrown by {@link waitFor} when the condition did not hold in time. */
export class WaitTimeoutError extends Error {
  constructor(description: string, timeoutMs: number, readonly lastError: unknown) {
    const last = lastError === undefined
      ? ""
      : `; last attempt: ${lastError instanceof Error ? lastError.message : String(lastError)}`;
    super(`timed out after ${timeoutMs} ms waiting for ${description}${last}`);
    this.name = "WaitTimeoutError";
  }
}

/** Thrown from a condition to end {@link waitFor} at once (e.g. the awaited process died). */
export class StopWaiting extends Error {
  constructor(message: string) {
    super(message);
    this.name = "StopWaiting";
  }
}

/**
 * Calls `condition` until it returns a value other than `false`, `undefined` or `null`, and returns
 * that value. An attempt that throws counts as "not yet"; its error is reported if time runs out.
 * A {@link StopWaiting} error ends the wait immediately and is rethrown.
 * At least one attempt is made, and an attempt in progress is never cut short, so the total can
 * exceed `timeoutMs` by one attempt's duration.
 */
export async function waitFor<T>(
  condition: () => T | false | undefined | null | Promise<T | false | undefined | null>,
  timeoutMs: number,
  options: WaitOptions = {},
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  const intervalMs = options.intervalMs ?? 250;
  let lastError: unknown;
  while (true) {
    try {
      const value = await condition();
      if (value !== false && value !== undefined && value !== null) return value;
      lastError = undefined;
    } catch (error) {
      if (error instanceof StopWaiting) throw error;
      lastError = error;
    }
    const remaining = deadline - Date.now();
    if (remaining <= 0) {
      throw new WaitTimeoutError(options.description ?? "condition", timeoutMs, lastError);
    }
    await new Promise((resolve) => setTimeout(resolve, Math.min(intervalMs, remaining)));
  }
}
