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

interface WriteRequest {
  oncomplete(status: number): void;
  bytes: number;
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
  /** Bytes handed to the handle that the kernel has not taken yet. */
  #inHandle = 0;
  /** Writes waiting for the handle's request in progress. */
  #waiting: Uint8Array[] = [];
  #waitingBytes = 0;
  readonly #drainListeners: (() => void)[] = [];
  /** A request the handle finished with at once, kept for the next write. */
  #spare: WriteRequest | null = null;

  constructor(socket: Duplex) {
    this.#socket = socket;
    this.#state = typeof this.#handle()?.writeBuffer === "function" ? writeState() : null;
  }

  /** Whether writes can skip the Writable (false: every write goes through socket.write). */
  get direct(): boolean {
    return this.#state !== null;
  }

  /** Bytes written and not yet taken by the kernel. */
  get bufferedBytes(): number {
    return this.#socket.writableLength + this.#inHandle + this.#waitingBytes;
  }

  /**
   * Writes `data`. Returns true when the kernel took all of it before this returned: nobody
   * holds `data` any more and the caller may reuse its memory.
   */
  write(data: Uint8Array): boolean {
    const socket = this.#socket;
    const handle = this.#state ? this.#handle() : null;
    if (!handle || socket.destroyed || !socket.writable || socket.writableCorked !== 0) {
      socket.write(data);
      return false;
    }
    // The handle starts each request at once, even with one still in progress: one at a time.
    if (this.#inHandle > 0) {
      this.#waiting.push(data);
      this.#waitingBytes += data.length;
      return false;
    }
    if (socket.writableLength !== 0) {
      socket.write(data);
      return false;
    }
    return this.#writeNow(handle, data);
  }

  #writeNow(handle: StreamHandle, data: Uint8Array): boolean {
    const req = this.#spare ?? this.#request();
    this.#spare = null;
    const err = handle.writeBuffer(req, data);
    if (err !== 0) {
      this.#socket.destroy(writeError(err));
      return false;
    }
    if (this.#state!.state[this.#state!.lastWriteWasAsync] !== 0) {
      req.bytes = data.length;
      req.data = data;
      this.#inHandle += data.length;
      return false;
    }
    this.#spare = req;
    return true;
  }

  /** Runs `listener` whenever what was buffered has gone to the kernel. */
  onDrain(listener: () => void): void {
    this.#drainListeners.push(listener);
    this.#socket.on("drain", listener);
  }

  /**
   * The handle's queue emptied. If the Writable still holds bytes, its 'drain' may never come
   * (it emits one only after refusing a write), so an empty write tells when they are out.
   */
  #drained(): void {
    const socket = this.#socket;
    if (socket.destroyed) return;
    if (socket.writableLength > 0) {
      socket.write(EMPTY, () => {
        if (this.bufferedBytes === 0) this.#notify();
      });
      return;
    }
    this.#notify();
  }

  #notify(): void {
    for (const l of this.#drainListeners) l();
  }

  #handle(): StreamHandle | null {
    return (this.#socket as unknown as { _handle?: StreamHandle | null })._handle ?? null;
  }

  #request(): WriteRequest {
    const req: WriteRequest = {
      bytes: 0,
      data: null,
      oncomplete: (status: number) => {
        this.#inHandle -= req.bytes;
        req.bytes = 0;
        req.data = null;
        if (status < 0) {
          this.#socket.destroy(writeError(status));
          return;
        }
        if (this.#inHandle > 0) return;
        const handle = this.#handle();
        if (this.#waiting.length > 0 && handle && !this.#socket.destroyed) {
          const next = this.#waiting.length === 1
            ? this.#waiting[0]
            : Buffer.concat(this.#waiting, this.#waitingBytes);
          this.#waiting = [];
          this.#waitingBytes = 0;
          if (!this.#writeNow(handle, next)) return;
        }
        this.#drained();
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
