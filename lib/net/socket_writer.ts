/**
 * Writes to a TCP socket's native handle when nothing waits in the socket's own queue, the way
 * node:net's Writable does underneath, without its bookkeeping. A change fans out as one write to
 * each of 10,000 map streams, and that bookkeeping (write request, callbacks, buffer state) was
 * ~1 µs of the ~11 µs a session costs. Any socket without such a handle (a WebSocket byte
 * stream, a test pipe) goes through its Writable as before.
 *
 * Order is kept: a direct write happens only when the Writable holds nothing, so everything
 * written before is already with the handle, which writes its requests in order. Bytes the kernel
 * did not take at once wait in the handle; they count in `bufferedBytes`, and their completion
 * calls the drain listeners as a Writable's 'drain' would.
 */
import process from "node:process";
import { getSystemErrorName } from "node:util";
import type { Duplex } from "node:stream";

/** The parts of Deno's (and Node's) stream handle used here. */
interface StreamHandle {
  writeBuffer(req: WriteRequest, data: Uint8Array): number;
}

type Done = (e: Error | null | undefined) => void;

interface WriteRequest {
  oncomplete(status: number): void;
  bytes: number;
  /** Callbacks of the writes in this request. */
  done: Done[] | null;
  /** The bytes of a write in progress: the handle does not keep them alive by itself. */
  data: Uint8Array | null;
}

/** The handle's report on its last write: did it have to queue (part of) it. */
interface WriteState {
  state: Int32Array;
  lastWriteWasAsync: number;
}

/** Reads the stream_wrap binding once; null when this runtime does not expose it. */
function writeState(): WriteState | null {
  try {
    const binding = (process as unknown as { binding(name: string): unknown }).binding(
      "stream_wrap",
    ) as { streamBaseState?: unknown; kLastWriteWasAsync?: unknown } | undefined;
    const state = binding?.streamBaseState;
    const index = binding?.kLastWriteWasAsync;
    if (!(state instanceof Int32Array) || typeof index !== "number") return null;
    return { state, lastWriteWasAsync: index };
  } catch {
    return null;
  }
}

const EMPTY = new Uint8Array(0);

export class SocketWriter {
  readonly #socket: Duplex;
  readonly #state: WriteState | null;
  /** Bytes given to the socket's Writable whose callbacks have not run. */
  #throughWritable = 0;
  /** Bytes handed to the handle that the kernel has not taken yet. */
  #inHandle = 0;
  /** Writes waiting for the handle's request in progress. */
  #waiting: Uint8Array[] = [];
  #waitingBytes = 0;
  #waitingDone: Done[] = [];
  readonly #drainListeners: (() => void)[] = [];
  /** A request the handle finished with at once, kept for the next write. */
  #spare: WriteRequest | null = null;

  /** Every write to `socket` from now on must go through this writer. */
  constructor(socket: Duplex) {
    this.#socket = socket;
    this.#state = typeof this.#handle()?.writeBuffer === "function" ? writeState() : null;
    // Bytes written before (an upgrade's response) go first: direct writes wait for them.
    if (socket.writableLength > 0) this.#throughSocket(EMPTY);
  }

  /** Whether writes can skip the Writable (false: every write goes through socket.write). */
  get direct(): boolean {
    return this.#state !== null;
  }

  /** Bytes written and not yet taken by the kernel. */
  get bufferedBytes(): number {
    return this.#throughWritable + this.#inHandle + this.#waitingBytes;
  }

  /**
   * Writes `data`. Returns true when the kernel took all of it before this returned: nobody
   * holds `data` any more and the caller may reuse its memory. `done` runs when the bytes are
   * out (or failed); with it the write goes through the Writable.
   */
  write(data: Uint8Array, done?: Done): boolean {
    // Checked here rather than through the Writable's getters (~0.4 µs a write): the handle
    // is gone once the socket is destroyed.
    const handle = this.#state && this.#throughWritable === 0 ? this.#handle() : null;
    if (!handle) {
      this.#throughSocket(data, done);
      return false;
    }
    // The handle starts each request at once, even with one still in progress: one at a time.
    if (this.#inHandle > 0) {
      this.#waiting.push(data);
      this.#waitingBytes += data.length;
      if (done) this.#waitingDone.push(done);
      return false;
    }
    return this.#writeNow(handle, data, done ? [done] : null);
  }

  /** Ends the socket once everything written has gone to the kernel. */
  end(done?: () => void): void {
    if (this.#inHandle > 0) {
      this.#ending = true;
      this.#endDone = done;
      return;
    }
    this.#socket.end(done);
  }
  #ending = false;
  #endDone: (() => void) | undefined;

  /** Runs `listener` whenever what was buffered has gone to the kernel. */
  onDrain(listener: () => void): void {
    this.#drainListeners.push(listener);
    this.#socket.on("drain", listener);
  }

  #throughSocket(data: Uint8Array, done?: Done): void {
    const n = Math.max(1, data.length);
    this.#throughWritable += n;
    this.#socket.write(data, (e) => {
      this.#throughWritable -= n;
      done?.(e);
    });
  }

  #writeNow(handle: StreamHandle, data: Uint8Array, done: Done[] | null): boolean {
    const req = this.#spare ?? this.#request();
    this.#spare = null;
    const err = handle.writeBuffer(req, data);
    if (err !== 0) {
      const e = writeError(err);
      this.#socket.destroy(e);
      if (done) { for (const d of done) d(e); }
      return false;
    }
    if (this.#state!.state[this.#state!.lastWriteWasAsync] !== 0) {
      req.bytes = data.length;
      req.data = data;
      req.done = done;
      this.#inHandle += data.length;
      return false;
    }
    this.#spare = req;
    if (done) { for (const d of done) d(null); }
    return true;
  }

  /** The socket is gone: writes still waiting fail, their callbacks told so. */
  #dropWaiting(e: Error): void {
    const done = this.#waitingDone;
    this.#waiting = [];
    this.#waitingBytes = 0;
    this.#waitingDone = [];
    for (const d of done) d(e);
  }

  #handle(): StreamHandle | null {
    return (this.#socket as unknown as { _handle?: StreamHandle | null })._handle ?? null;
  }

  #request(): WriteRequest {
    const req: WriteRequest = {
      bytes: 0,
      data: null,
      done: null,
      oncomplete: (status: number) => {
        this.#inHandle -= req.bytes;
        const done = req.done;
        req.bytes = 0;
        req.data = null;
        req.done = null;
        if (status < 0) {
          const e = writeError(status);
          this.#socket.destroy(e);
          if (done) { for (const d of done) d(e); }
          this.#dropWaiting(e);
          return;
        }
        if (done) { for (const d of done) d(null); }
        if (this.#inHandle > 0) return;
        const handle = this.#handle();
        if (!handle) this.#dropWaiting(new Error("write after the socket closed"));
        if (this.#waiting.length > 0 && handle) {
          const next = this.#waiting.length === 1
            ? this.#waiting[0]
            : Buffer.concat(this.#waiting, this.#waitingBytes);
          const waitingDone = this.#waitingDone.length > 0 ? this.#waitingDone : null;
          this.#waiting = [];
          this.#waitingBytes = 0;
          this.#waitingDone = [];
          if (!this.#writeNow(handle, next, waitingDone)) return;
        }
        if (this.#ending) {
          this.#ending = false;
          this.#socket.end(this.#endDone);
        }
        if (this.bufferedBytes === 0) { for (const l of this.#drainListeners) l(); }
      },
    };
    return req;
  }
}

function writeError(code: number): Error {
  let name = `error ${code}`;
  try {
    name = getSystemErrorName(code);
  } catch {
    // not an errno
  }
  return Object.assign(new Error(`write ${name}`), { code: name, syscall: "write" });
}
