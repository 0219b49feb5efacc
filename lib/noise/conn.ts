/**
 * NoiseConn: a node:stream Duplex of plaintext over a raw byte stream of Noise record frames.
 * It is what node:http2 serves (server.emit("connection", conn)) or dials
 * (http2.connect(url, { createConnection: () => conn })).
 *
 * A frame of the wrong type, an oversized frame or a record that fails to decrypt ends THIS
 * connection: the conn is destroyed with a NoiseProtocolError (an 'error' then 'close' event) and
 * the socket under it is destroyed. The conn always has an 'error' listener of its own, so a
 * caller that forgets one does not crash the process; read the reason from `closeError`.
 */
import { Duplex } from "node:stream";
import { formatKey } from "../tailcfg/keys.ts";
import { HEADER_LEN, MAX_CIPHERTEXT_LEN, MSG_ERROR, MSG_RECORD } from "./messages.ts";
import { RecordOpener, RecordSealer } from "./records.ts";
import { SocketWriter } from "../net/socket_writer.ts";
import type { WriteBatch, WriteDone } from "../net/write_batch.ts";

/** The peer broke the framing (type, size) of the record stream. */
export class NoiseProtocolError extends Error {
  override name = "NoiseProtocolError";
}

export interface NoiseConnOptions {
  /** The raw transport (TCP socket after the HTTP upgrade, or a WebSocket byte stream). */
  socket: Duplex;
  sealer: RecordSealer;
  opener: RecordOpener;
  /** The authenticated static public key of the other side (raw 32 bytes). */
  peerPublicKey: Uint8Array;
  /** Protocol version from the initiation header (= the client's capability version). */
  protocolVersion: number;
  handshakeHash: Uint8Array;
  /** Bytes of the record stream that were already read off the socket. */
  head?: Uint8Array;
  /** Writes made inside this batch's `run` are sealed at once and written after it. */
  writeBatch?: WriteBatch;
}

export class NoiseConn extends Duplex {
  readonly peerPublicKey: Uint8Array;
  readonly protocolVersion: number;
  readonly handshakeHash: Uint8Array;
  /** The first error that ended this conn, if any. */
  closeError: Error | undefined;

  readonly #socket: Duplex;
  /** Direct mode's way to the socket (lib/net/socket_writer.ts). */
  readonly #writer: SocketWriter;
  readonly #sealer: RecordSealer;
  readonly #opener: RecordOpener;
  /** Bytes of an incomplete frame carried over to the next chunk. */
  #pending: Buffer | null = null;
  #socketEnded = false;
  /** Direct mode: plaintext goes here instead of the Readable side. */
  #direct: ((plain: Buffer) => void) | undefined;
  readonly #batch: WriteBatch | undefined;
  /** Writes (and an end) handed to the batch and not made yet, and their bytes. */
  #deferred = 0;
  #deferredBytes = 0;

  constructor(opts: NoiseConnOptions) {
    // Half-open makes no sense for HTTP/2 inside Noise: when one side ends, so do we.
    super({ allowHalfOpen: false });
    this.peerPublicKey = opts.peerPublicKey;
    this.protocolVersion = opts.protocolVersion;
    this.handshakeHash = opts.handshakeHash;
    this.#socket = opts.socket;
    this.#writer = new SocketWriter(opts.socket);
    this.#sealer = opts.sealer;
    this.#opener = opts.opener;
    this.#batch = opts.writeBatch;

    this.on("error", (e: Error) => {
      this.closeError ??= e;
    });
    const socket = this.#socket;
    socket.on("data", this.#onData);
    socket.on("end", () => {
      this.#socketEnded = true;
      if (this.#pending && this.#pending.length > 0) {
        this.destroy(new NoiseProtocolError("connection closed in the middle of a frame"));
      } else this.push(null);
    });
    socket.on("error", (e: Error) => this.destroy(e));
    socket.on("close", () => {
      if (!this.destroyed) this.destroy();
    });
    if (opts.head && opts.head.length > 0) this.#onData(Buffer.from(opts.head));
  }

  /** The peer's static key as text, `mkey:<hex>` (the client's machine key on the server). */
  get peerKeyText(): string {
    return formatKey(this.peerPublicKey, "mkey");
  }

  get remoteAddress(): string | undefined {
    return (this.#socket as { remoteAddress?: string }).remoteAddress;
  }

  get remotePort(): number | undefined {
    return (this.#socket as { remotePort?: number }).remotePort;
  }

  get localAddress(): string | undefined {
    return (this.#socket as { localAddress?: string }).localAddress;
  }

  get localPort(): number | undefined {
    return (this.#socket as { localPort?: number }).localPort;
  }

  /** Records sent and received so far. */
  get recordCounts(): { sent: number; received: number } {
    return { sent: this.#sealer.count, received: this.#opener.count };
  }

  // node:http2 calls these on its socket; pass them to the TCP socket when it has them.
  setTimeout(ms: number, callback?: () => void): this {
    const s = this.#socket as { setTimeout?: (ms: number) => unknown };
    s.setTimeout?.call(this.#socket, ms);
    if (callback) this.once("timeout", callback);
    if (!this.#forwardsTimeout) {
      this.#forwardsTimeout = true;
      this.#socket.on("timeout", () => this.emit("timeout"));
    }
    return this;
  }
  #forwardsTimeout = false;

  setNoDelay(noDelay?: boolean): this {
    (this.#socket as { setNoDelay?: (v?: boolean) => unknown }).setNoDelay?.call(
      this.#socket,
      noDelay,
    );
    return this;
  }

  setKeepAlive(enable?: boolean, delay?: number): this {
    (this.#socket as { setKeepAlive?: (e?: boolean, d?: number) => unknown }).setKeepAlive
      ?.call(this.#socket, enable, delay);
    return this;
  }

  ref(): this {
    (this.#socket as { ref?: () => unknown }).ref?.call(this.#socket);
    return this;
  }

  unref(): this {
    (this.#socket as { unref?: () => unknown }).unref?.call(this.#socket);
    return this;
  }

  /**
   * Direct mode, for the server's own HTTP/2 (lib/h2): received plaintext is handed to `onPlain`
   * as it is opened, and `writePlain` seals and writes in the caller's turn. Both skip the
   * stream machinery, which costs more than the sealing itself at one write per peer change.
   */
  attachDirect(onPlain: (plain: Buffer) => void): void {
    this.#direct = onPlain;
    // Nobody reads the Readable side in this mode, so _read never resumes the socket: a socket
    // paused before (by whoever held it before the handshake) must be resumed here, or it stalls.
    if (!this.#socketEnded) this.#socket.resume();
  }

  /** Seals `pieces` (in order) into records and writes them to the socket as one write. */
  writePlain(pieces: Uint8Array[], totalBytes: number): void {
    if (this.destroyed) return;
    this.#send(pieces, totalBytes);
  }

  /** Bytes written to the socket (or sealed for it in a batch) and not yet taken by the OS. */
  get socketBufferedBytes(): number {
    return this.#writer.bufferedBytes + this.#deferredBytes;
  }

  /** Runs `listener` whenever the socket's write buffer empties. */
  onSocketDrain(listener: () => void): void {
    this.#writer.onDrain(listener);
  }

  /** Ends the socket once what was written has gone out. */
  endSocket(): void {
    if (this.#deferred > 0) this.#defer(null);
    else this.#writer.end();
  }

  #onData = (chunk: Buffer): void => {
    if (this.destroyed) return;
    let buf = this.#pending ? Buffer.concat([this.#pending, chunk]) : chunk;
    this.#pending = null;
    let off = 0;
    try {
      while (buf.length - off >= HEADER_LEN) {
        const type = buf[off];
        const length = (buf[off + 1] << 8) | buf[off + 2];
        if (type !== MSG_RECORD) throw unexpectedType(type, buf, off);
        if (length > MAX_CIPHERTEXT_LEN) {
          throw new NoiseProtocolError(
            `frame of ${HEADER_LEN + length} bytes exceeds the 4096-byte Noise frame limit`,
          );
        }
        if (buf.length - off < HEADER_LEN + length) break;
        const plain = this.#opener.open(buf.subarray(off + HEADER_LEN, off + HEADER_LEN + length));
        off += HEADER_LEN + length;
        if (plain.length === 0) continue;
        if (this.#direct) this.#direct(plain);
        else if (!this.push(plain)) this.#socket.pause();
      }
    } catch (e) {
      this.destroy(e as Error);
      return;
    }
    if (off < buf.length) {
      // Copy small leftovers so one big socket chunk is not kept alive by a few bytes.
      buf = buf.subarray(off);
      this.#pending = buf.length < 4096 ? Buffer.from(buf) : buf;
    }
  };

  override _read(): void {
    if (!this.#socketEnded) this.#socket.resume();
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (e?: Error | null) => void): void {
    this.#send([chunk], chunk.length, cb);
  }

  override _writev(
    chunks: { chunk: Buffer }[],
    cb: (e?: Error | null) => void,
  ): void {
    // HTTP/2 writes many small frames: pack them into as few records as possible.
    const pieces = chunks.map((c) => c.chunk);
    this.#send(pieces, pieces.reduce((n, p) => n + p.length, 0), cb);
  }

  /**
   * Seals and writes. Without `cb` (direct mode's hot path, one call per peer change) no
   * closure is made: a sealing error destroys the conn, a socket error reaches it as 'error'.
   */
  #send(pieces: readonly Uint8Array[], total: number, cb?: (e?: Error | null) => void): void {
    if (this.#batch && (this.#batch.open || this.#deferred > 0)) {
      this.#sendLater(pieces, total, cb);
      return;
    }
    let frames: Uint8Array;
    try {
      // Without a callback the output goes back to the engine when the socket takes it whole.
      frames = this.#sealer.sealPieces(pieces, total, !cb && this.#writer.direct);
    } catch (e) {
      if (cb) cb(e as Error);
      else this.destroy(e as Error);
      return;
    }
    if (cb) {
      this.#writer.write(frames, (e) => cb(e ?? null));
      return;
    }
    // Taken whole by the kernel: nobody holds `frames` any more.
    if (this.#writer.write(frames)) this.#sealer.reuse(frames);
  }

  /** In a batch: sealed now (records keep their order), written when the batch is. */
  #sendLater(pieces: readonly Uint8Array[], total: number, cb?: WriteDone): void {
    let frames: Uint8Array;
    try {
      // In the batch's memory (many wait at once, so the engine's one lent slab cannot serve),
      // unless the write cannot be taken at once and would keep the whole arena alive: the
      // socket is behind, or has no handle to write to (a WebSocket's byte stream).
      const memory = this.#writer.direct && this.#writer.bufferedBytes === 0
        ? this.#batch
        : undefined;
      frames = this.#sealer.sealPieces(pieces, total, false, memory);
    } catch (e) {
      if (cb) cb(e as Error);
      else this.destroy(e as Error);
      return;
    }
    this.#defer(frames, cb);
  }

  #defer(frames: Uint8Array | null, cb?: WriteDone): void {
    this.#deferred++;
    if (frames) this.#deferredBytes += frames.length;
    this.#batch!.defer(this, frames, cb);
  }

  /**
   * The batch writes (or, for null, ends) what was deferred here, in order. True when nothing
   * holds `frames` after this.
   */
  writeDeferred(frames: Uint8Array | null, cb: WriteDone | undefined): boolean {
    this.#deferred--;
    if (frames) this.#deferredBytes -= frames.length;
    if (this.destroyed) {
      cb?.(new Error("write after the connection closed"));
      return true;
    }
    if (frames === null) {
      this.#writer.end(cb ? () => cb() : undefined);
      return true;
    }
    if (cb) return this.#writer.write(frames, (e) => cb(e ?? null));
    return this.#writer.write(frames);
  }

  override _final(cb: (e?: Error | null) => void): void {
    if (this.#deferred > 0) this.#defer(null, () => cb());
    else this.#writer.end(() => cb());
  }

  override _destroy(err: Error | null, cb: (e?: Error | null) => void): void {
    this.#pending = null;
    this.#socket.destroy();
    cb(err);
  }
}

function unexpectedType(type: number, buf: Buffer, off: number): NoiseProtocolError {
  if (type === MSG_ERROR) {
    // An error frame from the peer: show its (unauthenticated) text, printable ASCII only.
    const len = (buf[off + 1] << 8) | buf[off + 2];
    const text = buf.subarray(off + HEADER_LEN, off + HEADER_LEN + Math.min(len, 200))
      .toString("latin1").replace(/[^\x20-\x7e]/g, "?");
    return new NoiseProtocolError(`peer sent an error frame: ${JSON.stringify(text)}`);
  }
  return new NoiseProtocolError(
    `received frame with unexpected type ${type}, want ${MSG_RECORD} (record)`,
  );
}
