/**
 * Admission for connection set-up: at most `limit` ts2021 connections at a time are between
 * their upgrade and their first map written (handshake, registration, building and writing a
 * full map of every peer); the others wait, oldest first, before any work is spent on them.
 *
 * Why: when a server restarts under 10,000 nodes, all of them reconnect at once. Served all at
 * once, every full map progresses a little at a time, none finishes before its client gives up,
 * the clients reconnect and the work starts over (measured: not one node reconverged in 126 s at
 * 100 % CPU). Served a few at a time, each finishes in milliseconds and the queue drains.
 *
 * A slot is given back when the connection's first map has been written, when the connection
 * closes, or after `maxHoldMs` (a registration waiting for an interactive login, a client that
 * never asks for a map). A waiting connection whose socket closes leaves the queue.
 */
import type { Duplex } from "node:stream";

export interface SetupGateOptions {
  /** Connections in set-up at once. */
  limit: number;
  /** A slot is given back after this long in any case. */
  maxHoldMs: number;
}

/** Call once the connection's set-up is done; later calls do nothing. */
export type SetupDone = () => void;

interface Waiter {
  socket: Duplex;
  start: (done: SetupDone) => void;
  /** Stops watching a waiting socket and leaves it paused, its bytes unread. */
  stopWatching?: () => void;
}

export class SetupGate {
  #active = 0;
  #waiting: Waiter[] = [];
  /** Index of the oldest waiter in #waiting (dequeued ones before it are dropped in bulk). */
  #head = 0;
  #closed = false;

  constructor(private readonly opts: SetupGateOptions) {}

  /** Connections in set-up now. */
  get active(): number {
    return this.#active;
  }

  /** Connections waiting for a slot. */
  get waiting(): number {
    return this.#waiting.length - this.#head;
  }

  /** Runs `start` now if a slot is free, else when one is (unless the socket closed first). */
  admit(socket: Duplex, start: (done: SetupDone) => void): void {
    if (this.#closed) return void socket.destroy();
    if (this.#active < this.opts.limit) return this.#run({ socket, start });
    // Until its turn nothing else listens: a reset must not become an uncaught error.
    socket.on("error", ignore);
    this.#waiting.push({ socket, start, stopWatching: watchForHangUp(socket) });
  }

  /** Drops the waiting connections (shutdown). */
  close(): void {
    this.#closed = true;
    for (let i = this.#head; i < this.#waiting.length; i++) this.#waiting[i].socket.destroy();
    this.#waiting = [];
    this.#head = 0;
  }

  #run(w: Waiter): void {
    this.#active++;
    let released = false;
    const done: SetupDone = () => {
      if (released) return;
      released = true;
      clearTimeout(timer);
      w.socket.off("close", done);
      this.#active--;
      this.#next();
    };
    const timer = setTimeout(done, this.opts.maxHoldMs);
    w.socket.once("close", done);
    try {
      w.start(done);
    } catch {
      w.socket.destroy();
      done();
    }
  }

  #next(): void {
    while (this.#active < this.opts.limit && this.#head < this.#waiting.length) {
      const w = this.#waiting[this.#head++];
      if (this.#head > 1024 && this.#head * 2 > this.#waiting.length) {
        this.#waiting = this.#waiting.slice(this.#head);
        this.#head = 0;
      }
      w.stopWatching?.();
      if (w.socket.destroyed || w.socket.closed) continue;
      this.#run(w);
    }
  }
}

function ignore(): void {}

/**
 * A client that gives up while waiting (its dial timeout) hangs up, and a paused socket never
 * notices: its turn would then spend a handshake and a full map on a dead connection (at
 * 10,000 nodes reconnecting, most of a restart storm's CPU). So a waiting socket flows: its
 * end destroys it at once, and the first bytes it sends (a client does not send any before its
 * 101) pause it again, put back to be read in turn.
 */
function watchForHangUp(socket: Duplex): () => void {
  const onEnd = () => socket.destroy();
  const onData = (chunk: Buffer) => {
    stop();
    socket.unshift(chunk);
  };
  const stop = () => {
    socket.off("end", onEnd);
    socket.off("data", onData);
    socket.pause();
  };
  socket.on("end", onEnd);
  socket.on("data", onData);
  return stop;
}
