/**
 * Admission for full maps: at most `limit` map requests at a time are being answered with a
 * full map (built, then written until the client has taken it); the others wait, oldest first,
 * before any work is spent on them.
 *
 * Why: when a server restarts under 10,000 nodes, all of them reconnect at once. Served all at
 * once, every full map progresses a little at a time and none finishes (measured: not one node
 * reconverged in 126 s at 100 % CPU). Served a few at a time, each finishes in milliseconds and
 * the queue drains.
 *
 * Why here and not before the Noise handshake: a client gives its dial (upgrade + handshake) 10
 * s and then starts over with a new connection, while it waits 120 s for a map answer and hears
 * keep-alives meanwhile. Gating the dial made a restart storm of 10,000 nodes time out ~230,000
 * dials (each an accept, an HTTP parse and often a wasted handshake); gating the map costs each
 * node one handshake and one wait.
 *
 * A slot is given back when the full map has been taken by the transport, when the request goes
 * away, or after `maxHoldMs` (a client that never reads). A waiter whose request goes away is
 * skipped when its turn comes.
 */

export interface SetupGateOptions {
  /** Full maps being answered at once. */
  limit: number;
  /** A slot is given back after this long in any case. */
  maxHoldMs: number;
}

/** Call once the answer is out; later calls do nothing. */
export type SetupDone = () => void;

/** A place in the queue (or a running slot). */
export interface SetupTicket {
  /** The request went away: leave the queue, or give the slot back if it is running. */
  cancel(): void;
}

interface Waiter {
  /** Dropped once run: a ticket lives as long as its stream and must not keep the request. */
  start: ((done: SetupDone) => void) | null;
  cancelled: boolean;
  /** Its slot's release while it runs; dropped once the slot is given back. */
  done: SetupDone | null;
}

export class SetupGate {
  #active = 0;
  #waiting: Waiter[] = [];
  /** Index of the oldest waiter in #waiting (dequeued ones before it are dropped in bulk). */
  #head = 0;
  #waitingCount = 0;
  #closed = false;
  /** A #next is queued. */
  #scheduled = false;

  constructor(private readonly opts: SetupGateOptions) {}

  /** Answers in progress now. */
  get active(): number {
    return this.#active;
  }

  /** Requests waiting for a slot. */
  get waiting(): number {
    return this.#waitingCount;
  }

  /**
   * Runs `start` now if a slot is free, else when one is (unless cancelled first). After close,
   * `start` never runs.
   */
  admit(start: (done: SetupDone) => void): SetupTicket {
    const w: Waiter = { start, cancelled: false, done: null };
    const ticket: SetupTicket = {
      cancel: () => {
        if (w.cancelled) return;
        w.cancelled = true;
        // Not run yet: it leaves the queue. Running: its slot comes back (once).
        if (w.start !== null) this.#waitingCount--;
        else w.done?.();
      },
    };
    if (this.#closed) {
      w.cancelled = true;
      return ticket;
    }
    if (this.#active < this.opts.limit && this.#waitingCount === 0) this.#run(w);
    else {
      this.#waiting.push(w);
      this.#waitingCount++;
    }
    return ticket;
  }

  /** Drops the waiters (shutdown); they never start. */
  close(): void {
    this.#closed = true;
    for (let i = this.#head; i < this.#waiting.length; i++) this.#waiting[i].cancelled = true;
    this.#waiting = [];
    this.#head = 0;
    this.#waitingCount = 0;
  }

  #run(w: Waiter): void {
    this.#active++;
    let released = false;
    const done: SetupDone = () => {
      if (released) return;
      released = true;
      w.done = null;
      clearTimeout(timer);
      this.#active--;
      // Not inside the caller's stack: a slot is often given back from deep in another
      // connection's write (the last piece of a full map taken), and the notifier counts what
      // runs in its flush as the flush's own cost.
      if (!this.#scheduled) {
        this.#scheduled = true;
        queueMicrotask(() => {
          this.#scheduled = false;
          this.#next();
        });
      }
    };
    w.done = done;
    const timer = setTimeout(done, this.opts.maxHoldMs);
    const start = w.start!;
    w.start = null;
    try {
      start(done);
    } catch {
      done();
    }
  }

  #next(): void {
    if (this.#closed) return;
    while (this.#active < this.opts.limit && this.#head < this.#waiting.length) {
      const w = this.#waiting[this.#head++];
      if (this.#head > 1024 && this.#head * 2 > this.#waiting.length) {
        this.#waiting = this.#waiting.slice(this.#head);
        this.#head = 0;
      }
      if (w.cancelled) continue;
      this.#waitingCount--;
      this.#run(w);
    }
  }
}
