/**
 * Socket writes of a fan-out, made in passes of their own. A change goes to every map stream:
 * frame, seal, write, next stream. Each write is a system call that, on loopback, also runs the
 * receiving side's TCP; after it the framing and sealing code and data of the next stream are no
 * longer in the CPU's caches. Measured with `deno task fanout-floor` at 10,000 connections,
 * framing and sealing for 128 streams and then writing to the 128 is 0.5-1 µs a stream cheaper
 * than taking turns (of ~10), as cheap as sealing all 10,000 first. Small passes keep the first
 * bytes going out at once: the receivers start reading while the rest is sealed.
 *
 * Inside `run`, writers that support it (NoiseConn) seal at once, in call order, and hand the
 * sealed bytes here instead of to their socket; they are written in the order they came, when
 * `maxWrites` wait, when more than `maxBytes` wait (a batch of full maps must not hold
 * gigabytes), and when `run` returns. A writer with deferred bytes keeps deferring until they are
 * written, so its own writes never overtake each other.
 */

/** Called back when a deferred write has gone to the socket (or failed), as a Writable's. */
export type WriteDone = (e?: Error | null) => void;

/** One writer's side of a deferred write. */
export interface DeferredWriter {
  /**
   * Writes what was deferred (`null`: ends the socket), in the order it was deferred. True when
   * nothing holds `data` after the call (the kernel took it whole, or it was dropped).
   */
  writeDeferred(data: Uint8Array | null, done: WriteDone | undefined): boolean;
}

/** Deferred bytes past which a batch is written before `run` returns. */
const MAX_BATCH_BYTES = 8 << 20;
/** Deferred writes past which the batch is written before `run` returns. */
const MAX_BATCH_WRITES = 128;
/**
 * Memory that deferred records are sealed into (`take`), reused while the kernel takes every
 * write whole: a buffer of their own for each of 10,000 records a flush was ~6 MB of short-lived
 * ArrayBuffers. A write the kernel did not take whole keeps the whole arena alive until it is
 * done (the socket's handle points into it), so it is small: 128 churn deltas fit.
 */
const ARENA_BYTES = 128 << 10;

export class WriteBatch {
  #depth = 0;
  #writers: DeferredWriter[] = [];
  #data: (Uint8Array | null)[] = [];
  #done: (WriteDone | undefined)[] = [];
  #bytes = 0;
  #flushing = false;
  #arena: ArrayBuffer | null = null;
  #arenaUsed = 0;

  constructor(
    private readonly maxBytes = MAX_BATCH_BYTES,
    private readonly maxWrites = MAX_BATCH_WRITES,
  ) {}

  /** Whether writes are being deferred now. */
  get open(): boolean {
    return this.#depth > 0;
  }

  /** Runs `fn` with writes deferred, then writes them. */
  run<T>(fn: () => T): T {
    this.#depth++;
    try {
      return fn();
    } finally {
      if (--this.#depth === 0) this.flush();
    }
  }

  /**
   * Memory for `len` bytes of a record to defer, valid until the batch has written it; null when
   * the arena has no room (the caller uses memory of its own).
   */
  take(len: number): Uint8Array | null {
    if (this.#arena === null) {
      this.#arena = new ArrayBuffer(ARENA_BYTES);
      this.#arenaUsed = 0;
    }
    if (this.#arenaUsed + len > ARENA_BYTES) return null;
    const view = new Uint8Array(this.#arena, this.#arenaUsed, len);
    this.#arenaUsed += len;
    return view;
  }

  /** Queues one write of `writer` (its `writeDeferred` makes it later). */
  defer(writer: DeferredWriter, data: Uint8Array | null, done?: WriteDone): void {
    this.#writers.push(writer);
    this.#data.push(data);
    this.#done.push(done);
    if (data) this.#bytes += data.length;
    if (this.#bytes >= this.maxBytes || this.#writers.length >= this.maxWrites) this.flush();
  }

  /** Makes every deferred write now, in order. */
  flush(): void {
    // A write's callback may defer more (a writer still has bytes here): the loop takes them too.
    if (this.#flushing) return;
    this.#flushing = true;
    const writers = this.#writers;
    const data = this.#data;
    const done = this.#done;
    let failure: unknown = null;
    // Whether the kernel took every write of the arena's memory whole: nothing holds it any more.
    let released = true;
    try {
      for (let i = 0; i < writers.length; i++) {
        const bytes = data[i];
        try {
          const taken = writers[i].writeDeferred(bytes, done[i]);
          if (!taken && bytes !== null && bytes.buffer === this.#arena) released = false;
        } catch (e) {
          // One writer's bug must not lose the other writers' bytes.
          failure ??= e;
          released = false;
        }
      }
    } finally {
      writers.length = 0;
      data.length = 0;
      done.length = 0;
      this.#bytes = 0;
      this.#flushing = false;
      // A socket still holds part of the arena: the next records go to a new one, and the old
      // one lives as long as that write.
      if (released) this.#arenaUsed = 0;
      else this.#arena = null;
    }
    if (failure !== null) throw failure;
  }
}
