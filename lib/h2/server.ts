/**
 * A small HTTP/2 server connection (RFC 9113) for the control protocol inside Noise: the client
 * is Go's HTTP/2 transport (or node:http2 in tests); requests are small JSON bodies; responses
 * are JSON or one long stream of map frames.
 *
 * Why our own: node:http2 costs ~20 µs and two buffer copies per written message through its
 * stream and session machinery, paid once per receiving node per change, and ~90 KB of native
 * memory per connection. Here a write frames the bytes and hands them to the transport (which
 * seals them into Noise records) in the same call; what waits for flow-control window or a slow
 * socket waits as views of the caller's (shared) buffers.
 *
 * Not here: server push, priorities (ignored), trailers in responses, request bodies larger than
 * `maxBodyBytes` (refused by the handler's limit and never buffered past it).
 */
import {
  DEFAULT_MAX_FRAME_SIZE,
  DEFAULT_WINDOW,
  ErrorCode,
  Flag,
  frame,
  FRAME_HEADER_LEN,
  frameHeader,
  FrameType,
  goAwayFrame,
  MAX_WINDOW,
  PREFACE,
  rstStreamFrame,
  Setting,
  settingsFrame,
  windowUpdateFrame,
} from "./frames.ts";
import { encodeResponseHeaders, HpackDecoder, HpackError } from "./hpack.ts";

/** Where the connection's plaintext goes (Noise records, or a plain stream in tests). */
export interface H2Transport {
  /**
   * Sends the pieces, in order, as one write. Of several pieces, the bytes are read (sealed or
   * copied) before it returns: the connection reuses its frame-header memory right after.
   */
  write(pieces: Uint8Array[], totalBytes: number): void;
  /** Bytes written and not yet taken by the OS. */
  readonly bufferedBytes: number;
  /** Closes after what was written goes out. */
  end(): void;
  destroy(): void;
}

export interface H2ServerOptions {
  maxConcurrentStreams?: number;
  /** Body bytes kept per request; more is counted, not stored (the handler refuses it). */
  maxBodyBytes?: number;
  /** The connection stops filling the transport when this many bytes wait in it. */
  highWaterBytes?: number;
}

/** A request as the handler sees it. */
export interface H2Request {
  readonly streamId: number;
  readonly method: string;
  /** `:path`, query included. */
  readonly path: string;
  readonly headers: ReadonlyMap<string, string>;
  /** Aborted when the client resets the stream or the connection goes away first. */
  readonly signal: AbortSignal;
  /** Whether the client has sent its whole body. */
  readonly complete: boolean;
  /** The whole body; rejects with BodyTooLargeError past `limit` and RequestAbortedError. */
  body(limit: number): Promise<Uint8Array>;
}

export class BodyTooLargeError extends Error {
  override name = "BodyTooLargeError";
  constructor(readonly limit: number) {
    super(`request body larger than ${limit} bytes`);
  }
}

export class RequestAbortedError extends Error {
  override name = "RequestAbortedError";
}

/** The response side of a stream. */
export interface H2Response {
  readonly headersSent: boolean;
  /** end() was called. */
  readonly ended: boolean;
  /** The stream is gone: finished, reset, or its connection closed. */
  readonly closed: boolean;
  /** Bytes queued on this stream plus those waiting in the transport. */
  readonly bufferedBytes: number;
  /**
   * Bytes queued on this stream only: no look at the socket, whose share is bounded by the
   * connection's high-water mark (~256 KB), for checks made on every write.
   */
  readonly queuedBytes: number;
  writeHead(status: number, headers?: Record<string, string>): void;
  /**
   * Queues `data` (not copied: it must not change), or several pieces in order, and sends what
   * the windows allow now. `onTaken` runs once its last byte has been handed to the transport.
   */
  write(data: Uint8Array | readonly Uint8Array[], onTaken?: () => void): void;
  end(data?: Uint8Array | string): void;
  /** Resets the stream (CANCEL). */
  destroy(): void;
  /** Runs once when the stream is gone, for any reason. */
  onClose(listener: () => void): void;
}

export type H2Handler = (req: H2Request, res: H2Response) => void;

class ConnectionError extends Error {
  constructor(readonly code: number, message: string) {
    super(message);
  }
}

interface Pending {
  data: Uint8Array;
  offset: number;
  onTaken?: () => void;
}

const ENCODER = new TextEncoder();
/** Our receive window per stream and for the connection. */
const RECV_STREAM_WINDOW = 1 << 20;
const RECV_CONN_WINDOW = 16 << 20;

class Stream implements H2Request, H2Response {
  readonly abort = new AbortController();
  headersSent = false;
  ended = false;
  closed = false;
  remoteEnded = false;
  /** Our END_STREAM went out. */
  localEnded = false;
  sendWindow: number;
  readonly queue: Pending[] = [];
  queuedBytes = 0;
  inReady = false;
  bodyChunks: Uint8Array[] = [];
  bodyBytes = 0;
  /** Of bodyBytes, those still counted against the connection's unread-body budget. */
  heldBytes = 0;
  /** Body bytes past maxBodyBytes: counted so the handler's limit still sees them. */
  overflowBytes = 0;
  #bodyWaiter: (() => void) | undefined;
  #closeListeners: (() => void)[] = [];

  constructor(
    readonly conn: H2ServerConnection,
    readonly streamId: number,
    readonly method: string,
    readonly path: string,
    readonly headers: ReadonlyMap<string, string>,
    sendWindow: number,
  ) {
    this.sendWindow = sendWindow;
  }

  get signal(): AbortSignal {
    return this.abort.signal;
  }

  get complete(): boolean {
    return this.remoteEnded;
  }

  get bufferedBytes(): number {
    return this.queuedBytes + this.conn.transportBuffered;
  }

  body(limit: number): Promise<Uint8Array> {
    const declared = Number(this.headers.get("content-length"));
    if (Number.isFinite(declared) && declared > limit) {
      return Promise.reject(new BodyTooLargeError(limit));
    }
    return new Promise((resolve, reject) => {
      const check = () => {
        // Past maxBodyBytes nothing was kept: refuse rather than hand over a truncated body.
        if (this.bodyBytes + this.overflowBytes > limit || this.overflowBytes > 0) {
          this.#bodyWaiter = undefined;
          reject(new BodyTooLargeError(Math.min(limit, this.bodyBytes)));
        } else if (this.remoteEnded) {
          this.#bodyWaiter = undefined;
          const out = new Uint8Array(this.bodyBytes);
          let off = 0;
          for (const c of this.bodyChunks) {
            out.set(c, off);
            off += c.length;
          }
          this.bodyChunks = [];
          this.conn.releaseBody(this);
          resolve(out);
        } else if (this.closed) {
          this.#bodyWaiter = undefined;
          reject(new RequestAbortedError("request aborted"));
        } else {
          this.#bodyWaiter = check;
        }
      };
      check();
    });
  }

  bodyProgress(): void {
    this.#bodyWaiter?.();
  }

  writeHead(status: number, headers?: Record<string, string>): void {
    if (this.headersSent || this.closed) return;
    this.headersSent = true;
    this.conn.sendHeaders(this.streamId, encodeResponseHeaders(status, headers));
  }

  write(data: Uint8Array | readonly Uint8Array[], onTaken?: () => void): void {
    if (this.closed || this.ended) return;
    if (!this.headersSent) this.writeHead(200);
    if (this.queue.length === 0 && this.conn.writeNow(this, data, onTaken)) return;
    if (data instanceof Uint8Array) {
      this.queue.push({ data, offset: 0, onTaken });
      this.queuedBytes += data.length;
    } else {
      data.forEach((piece, i) => {
        this.queue.push({
          data: piece,
          offset: 0,
          onTaken: i === data.length - 1 ? onTaken : undefined,
        });
        this.queuedBytes += piece.length;
      });
    }
    this.conn.streamHasData(this);
  }

  end(data?: Uint8Array | string): void {
    if (this.closed || this.ended) return;
    if (!this.headersSent) this.writeHead(200);
    if (data !== undefined && data.length > 0) {
      this.write(typeof data === "string" ? ENCODER.encode(data) : data);
    }
    this.ended = true;
    this.conn.streamHasData(this);
  }

  destroy(): void {
    this.conn.resetStream(this, ErrorCode.CANCEL);
  }

  onClose(listener: () => void): void {
    if (this.closed) queueMicrotask(listener);
    else this.#closeListeners.push(listener);
  }

  /** Marks the stream gone; `aborted` when it did not finish normally. */
  finish(aborted: boolean): void {
    if (this.closed) return;
    this.closed = true;
    this.queue.length = 0;
    this.queuedBytes = 0;
    this.bodyChunks = [];
    if (aborted) this.abort.abort(new RequestAbortedError("stream reset"));
    this.#bodyWaiter?.();
    for (const l of this.#closeListeners.splice(0)) {
      try {
        l();
      } catch {
        // a listener's failure is its own
      }
    }
  }
}

export class H2ServerConnection {
  readonly #transport: H2Transport;
  readonly #handler: H2Handler;
  readonly #maxStreams: number;
  readonly #maxBody: number;
  readonly #highWater: number;
  readonly #hpack = new HpackDecoder();
  readonly #streams = new Map<number, Stream>();
  /** Streams with queued data or a pending END_STREAM, in round-robin order. */
  readonly #ready: Stream[] = [];
  /** Control frames (and HEADERS) waiting for the next flush, in order. */
  #control: Uint8Array[] = [];
  #controlBytes = 0;
  #input: Uint8Array | null = null;
  readonly #inbox: Uint8Array[] = [];
  /** Streams we reset before the client finished sending (the newest 128): late frames are ok. */
  readonly #resetIds = new Set<number>();
  #receiving = false;
  /** flush() was asked for while flushing: go round again. */
  #flushAgain = false;
  #prefaceSeen = false;
  #settingsSeen = false;
  #highestStreamId = 0;
  #sendConnWindow = DEFAULT_WINDOW;
  #peerInitialWindow = DEFAULT_WINDOW;
  #peerMaxFrame = DEFAULT_MAX_FRAME_SIZE;
  #recvConnWindow = RECV_CONN_WINDOW;
  /** Body bytes held for handlers that have not read them yet. */
  #heldBodyBytes = 0;
  /** An unfinished header block: its stream, flags and pieces. */
  #headerBlock: { streamId: number; endStream: boolean; pieces: Uint8Array[] } | null = null;
  #goingAway = false;
  #closed = false;
  #flushing = false;
  /** A finish asked for while flushing, done when the flush has written. */
  #finishPending = false;
  #onClose: (() => void)[] = [];
  /** writeNow's frame header: the transport has read it before its write returns. */
  readonly #scratchHeader = new Uint8Array(FRAME_HEADER_LEN);

  constructor(transport: H2Transport, handler: H2Handler, opts: H2ServerOptions = {}) {
    this.#transport = transport;
    this.#handler = handler;
    this.#maxStreams = opts.maxConcurrentStreams ?? 250;
    this.#maxBody = opts.maxBodyBytes ?? 4 << 20;
    this.#highWater = opts.highWaterBytes ?? 256 << 10;
    this.#queueControl(settingsFrame([
      [Setting.MAX_CONCURRENT_STREAMS, this.#maxStreams],
      [Setting.INITIAL_WINDOW_SIZE, RECV_STREAM_WINDOW],
      [Setting.MAX_HEADER_LIST_SIZE, this.#hpack.maxHeaderListSize],
    ]));
    this.#queueControl(windowUpdateFrame(0, RECV_CONN_WINDOW - DEFAULT_WINDOW));
    this.flush();
  }

  get transportBuffered(): number {
    return this.#transport.bufferedBytes;
  }

  get isClosed(): boolean {
    return this.#closed;
  }

  get streamCount(): number {
    return this.#streams.size;
  }

  /** Runs once when the connection is closed. */
  onClose(listener: () => void): void {
    if (this.#closed) queueMicrotask(listener);
    else this.#onClose.push(listener);
  }

  /**
   * Plaintext from the client. A chunk that arrives while one is being handled (a transport that
   * delivers the peer's answer inside our write) waits its turn, so frames stay in order.
   */
  receive(chunk: Uint8Array): void {
    if (this.#closed) return;
    this.#inbox.push(chunk);
    if (this.#receiving) return;
    this.#receiving = true;
    try {
      while (this.#inbox.length > 0 && !this.#closed) this.#process(this.#inbox.shift()!);
    } finally {
      this.#receiving = false;
    }
    this.flush();
  }

  #process(chunk: Uint8Array): void {
    let buf = chunk;
    if (this.#input) {
      buf = new Uint8Array(this.#input.length + chunk.length);
      buf.set(this.#input, 0);
      buf.set(chunk, this.#input.length);
      this.#input = null;
    }
    let off = 0;
    try {
      if (!this.#prefaceSeen) {
        const n = Math.min(buf.length, PREFACE.length);
        for (let i = 0; i < n; i++) {
          if (buf[i] !== PREFACE[i]) {
            throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "not an HTTP/2 client preface");
          }
        }
        if (buf.length < PREFACE.length) {
          this.#input = buf.slice();
          return;
        }
        this.#prefaceSeen = true;
        off = PREFACE.length;
      }
      while (buf.length - off >= FRAME_HEADER_LEN && !this.#closed) {
        const length = (buf[off] << 16) | (buf[off + 1] << 8) | buf[off + 2];
        if (length > DEFAULT_MAX_FRAME_SIZE) {
          throw new ConnectionError(ErrorCode.FRAME_SIZE_ERROR, `frame of ${length} bytes`);
        }
        if (buf.length - off < FRAME_HEADER_LEN + length) break;
        const type = buf[off + 3];
        const flags = buf[off + 4];
        const streamId = ((buf[off + 5] & 0x7f) << 24) | (buf[off + 6] << 16) |
          (buf[off + 7] << 8) | buf[off + 8];
        const payload = buf.subarray(off + FRAME_HEADER_LEN, off + FRAME_HEADER_LEN + length);
        off += FRAME_HEADER_LEN + length;
        this.#onFrame(type, flags, streamId, payload);
      }
    } catch (e) {
      if (e instanceof ConnectionError) this.#connectionError(e.code, e.message);
      else if (e instanceof HpackError) {
        this.#connectionError(ErrorCode.COMPRESSION_ERROR, e.message);
      } else throw e;
      return;
    }
    if (off < buf.length && !this.#closed) this.#input = buf.slice(off);
  }

  /** The transport took its buffered bytes: send more. */
  drained(): void {
    this.flush();
  }

  /** The transport closed under us. */
  transportClosed(): void {
    this.#teardown();
  }

  /** Graceful: GOAWAY, then close once the open streams are done. */
  close(): void {
    if (this.#closed || this.#goingAway) return;
    this.#goingAway = true;
    this.#queueControl(goAwayFrame(this.#highestStreamId, ErrorCode.NO_ERROR));
    this.flush();
    this.#maybeFinish();
  }

  /** Now: every stream is aborted and the transport destroyed. */
  destroy(): void {
    if (this.#closed) return;
    this.#teardown();
    this.#transport.destroy();
  }

  // --- used by Stream

  /** The stream's body was handed over (or dropped): it no longer counts as unread. */
  releaseBody(s: Stream): void {
    this.#heldBodyBytes -= s.heldBytes;
    s.heldBytes = 0;
  }

  sendHeaders(streamId: number, block: Uint8Array): void {
    // Our header blocks are a few dozen bytes; they always fit one frame.
    this.#queueControl(frame(FrameType.HEADERS, Flag.END_HEADERS, streamId, block));
  }

  streamHasData(s: Stream): void {
    if (!s.inReady) {
      s.inReady = true;
      this.#ready.push(s);
    }
    this.flush();
  }

  /**
   * The common case of a map stream, one small message per change: nothing waits anywhere (no
   * control frame, no stream on the ready list) and the windows and the transport's buffer take
   * all of it. Frames it as one DATA frame and writes it now, with no queue, no ready list and no
   * new header buffer (the transport seals the pieces before it returns). False: use the queue.
   */
  writeNow(s: Stream, data: Uint8Array | readonly Uint8Array[], onTaken?: () => void): boolean {
    if (this.#flushing || this.#closed || this.#ready.length > 0 || this.#control.length > 0) {
      return false;
    }
    let n = 0;
    if (data instanceof Uint8Array) n = data.length;
    else for (const p of data) n += p.length;
    if (
      n === 0 || n > s.sendWindow || n > this.#sendConnWindow || n > this.#peerMaxFrame ||
      n + FRAME_HEADER_LEN >= this.#highWater - this.#transport.bufferedBytes
    ) return false;
    const h = this.#scratchHeader;
    h[0] = n >>> 16;
    h[1] = (n >>> 8) & 0xff;
    h[2] = n & 0xff;
    h[3] = FrameType.DATA;
    h[4] = 0;
    const id = s.streamId;
    h[5] = (id >>> 24) & 0x7f;
    h[6] = (id >>> 16) & 0xff;
    h[7] = (id >>> 8) & 0xff;
    h[8] = id & 0xff;
    const pieces = data instanceof Uint8Array ? [h, data] : [h, ...data];
    s.sendWindow -= n;
    this.#sendConnWindow -= n;
    this.#flushing = true;
    try {
      this.#transport.write(pieces, n + FRAME_HEADER_LEN);
    } finally {
      this.#flushing = false;
    }
    if (this.#flushAgain) this.flush();
    if (this.#finishPending) {
      this.#finishPending = false;
      this.#maybeFinish();
    }
    onTaken?.();
    return true;
  }

  resetStream(s: Stream, code: number): void {
    if (s.closed) return;
    this.#queueControl(rstStreamFrame(s.streamId, code));
    this.#closeStream(s, true);
    this.flush();
  }

  // --- output

  #queueControl(f: Uint8Array): void {
    this.#control.push(f);
    this.#controlBytes += f.length;
  }

  /** Frames what the windows and the transport's buffer allow, as one transport write. */
  flush(): void {
    if (this.#closed) return;
    if (this.#flushing) {
      this.#flushAgain = true;
      return;
    }
    do {
      this.#flushAgain = false;
      this.#flushOnce();
    } while (this.#flushAgain && !this.#closed);
  }

  #flushOnce(): void {
    this.#flushing = true;
    const taken: (() => void)[] = [];
    try {
      const pieces = this.#control;
      let total = this.#controlBytes;
      this.#control = [];
      this.#controlBytes = 0;
      // The transport's buffer does not change before the one write at the end.
      const budget = this.#highWater - this.#transport.bufferedBytes;
      const ready = this.#ready;
      let i = 0;
      // Every turn either sends bytes or takes a stream off the ready list, so this ends.
      while (ready.length > 0 && budget - total > 0) {
        if (i >= ready.length) i = 0;
        const s = ready[i];
        const item = s.queue[0];
        if (s.closed || item === undefined) {
          ready.splice(i, 1);
          s.inReady = false;
          // Nothing queued: END_STREAM if it was asked for.
          if (!s.closed && s.ended && !s.localEnded) {
            const f = frameHeader(0, FrameType.DATA, Flag.END_STREAM, s.streamId);
            pieces.push(f);
            total += f.length;
            s.localEnded = true;
            this.#afterLocalEnd(s);
          }
          continue;
        }
        const left = item.data.length - item.offset;
        if (left === 0) {
          // An empty write: nothing to frame, but its caller waits to hear it was taken.
          s.queue.shift();
          if (item.onTaken) taken.push(item.onTaken);
          continue;
        }
        if (this.#sendConnWindow <= 0) break; // nobody can send until the client opens it
        if (s.sendWindow <= 0) {
          // Out of window: a WINDOW_UPDATE puts it back.
          ready.splice(i, 1);
          s.inReady = false;
          continue;
        }
        const n = Math.min(
          left,
          this.#peerMaxFrame,
          s.sendWindow,
          this.#sendConnWindow,
          Math.max(budget - total, 1024),
        );
        const last = n === left;
        const endNow = last && s.queue.length === 1 && s.ended;
        const h = frameHeader(n, FrameType.DATA, endNow ? Flag.END_STREAM : 0, s.streamId);
        pieces.push(h, item.data.subarray(item.offset, item.offset + n));
        total += h.length + n;
        s.sendWindow -= n;
        this.#sendConnWindow -= n;
        s.queuedBytes -= n;
        if (last) {
          s.queue.shift();
          if (item.onTaken) taken.push(item.onTaken);
        } else {
          item.offset += n;
        }
        if (endNow) {
          s.localEnded = true;
          ready.splice(i, 1);
          s.inReady = false;
          this.#afterLocalEnd(s);
          continue;
        }
        // Round-robin: a stream sends a frame, then the next one has a turn.
        i++;
      }
      // Frames queued while framing (an RST after an early answer) go in the same write.
      for (const f of this.#control) pieces.push(f);
      total += this.#controlBytes;
      this.#control = [];
      this.#controlBytes = 0;
      if (total > 0) this.#transport.write(pieces, total);
    } finally {
      this.#flushing = false;
    }
    if (this.#finishPending) {
      this.#finishPending = false;
      this.#maybeFinish();
    }
    // After the flush, so a callback that writes again is sent, not stranded.
    for (const cb of taken) cb();
  }

  #afterLocalEnd(s: Stream): void {
    if (s.remoteEnded) {
      this.#closeStream(s, false);
    } else {
      // The answer is complete; the client need not send the rest of its body.
      this.#control.push(rstStreamFrame(s.streamId, ErrorCode.NO_ERROR));
      this.#controlBytes += FRAME_HEADER_LEN + 4;
      this.#closeStream(s, false);
    }
  }

  #closeStream(s: Stream, aborted: boolean): void {
    if (!s.remoteEnded) {
      this.#resetIds.add(s.streamId);
      if (this.#resetIds.size > 128) {
        this.#resetIds.delete(this.#resetIds.values().next().value!);
      }
    }
    if (this.#streams.get(s.streamId) === s) this.#streams.delete(s.streamId);
    this.releaseBody(s);
    s.finish(aborted);
    this.#maybeFinish();
  }

  #maybeFinish(): void {
    if (this.#flushing) {
      this.#finishPending = true;
      return;
    }
    if (this.#goingAway && this.#streams.size === 0 && !this.#closed) {
      this.flush();
      this.#teardown();
      this.#transport.end();
    }
  }

  #connectionError(code: number, message: string): void {
    if (this.#closed) return;
    this.#queueControl(goAwayFrame(this.#highestStreamId, code, message));
    this.#goingAway = true;
    this.flush();
    this.#teardown();
    this.#transport.end();
    // A peer that broke the protocol does not get to hold the connection half-open: the GOAWAY
    // has a moment to leave, then the transport goes.
    const transport = this.#transport;
    setTimeout(() => transport.destroy(), 100);
  }

  #teardown(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#input = null;
    const streams = [...this.#streams.values()];
    this.#streams.clear();
    this.#ready.length = 0;
    for (const s of streams) s.finish(true);
    for (const l of this.#onClose.splice(0)) l();
  }

  // --- input

  #onFrame(type: number, flags: number, streamId: number, payload: Uint8Array): void {
    if (!this.#settingsSeen && type !== FrameType.SETTINGS) {
      throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "the first frame must be SETTINGS");
    }
    if (this.#headerBlock && type !== FrameType.CONTINUATION) {
      throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "header block interrupted");
    }
    switch (type) {
      case FrameType.DATA:
        return this.#onData(flags, streamId, payload);
      case FrameType.HEADERS:
        return this.#onHeaders(flags, streamId, payload);
      case FrameType.CONTINUATION:
        return this.#onContinuation(flags, streamId, payload);
      case FrameType.PRIORITY:
        if (streamId === 0 || payload.length !== 5) {
          throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "bad PRIORITY frame");
        }
        return;
      case FrameType.RST_STREAM: {
        if (streamId === 0 || payload.length !== 4) {
          throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "bad RST_STREAM frame");
        }
        const s = this.#streams.get(streamId);
        if (s) this.#closeStream(s, true);
        return;
      }
      case FrameType.SETTINGS:
        return this.#onSettings(flags, streamId, payload);
      case FrameType.PUSH_PROMISE:
        throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "PUSH_PROMISE from a client");
      case FrameType.PING:
        if (streamId !== 0 || payload.length !== 8) {
          throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "bad PING frame");
        }
        if (!(flags & Flag.ACK)) this.#queueControl(frame(FrameType.PING, Flag.ACK, 0, payload));
        return;
      case FrameType.GOAWAY:
        this.#goingAway = true;
        this.#maybeFinish();
        return;
      case FrameType.WINDOW_UPDATE:
        return this.#onWindowUpdate(streamId, payload);
      default:
        return; // unknown frame types are ignored (§5.5)
    }
  }

  #onSettings(flags: number, streamId: number, payload: Uint8Array): void {
    if (streamId !== 0) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "SETTINGS on a stream");
    if (flags & Flag.ACK) {
      if (payload.length !== 0) {
        throw new ConnectionError(ErrorCode.FRAME_SIZE_ERROR, "SETTINGS ACK with a payload");
      }
      return;
    }
    if (payload.length % 6 !== 0) {
      throw new ConnectionError(ErrorCode.FRAME_SIZE_ERROR, "SETTINGS length not a multiple of 6");
    }
    this.#settingsSeen = true;
    const view = new DataView(payload.buffer, payload.byteOffset, payload.length);
    for (let i = 0; i < payload.length; i += 6) {
      const id = view.getUint16(i);
      const value = view.getUint32(i + 2);
      if (id === Setting.INITIAL_WINDOW_SIZE) {
        if (value > MAX_WINDOW) {
          throw new ConnectionError(ErrorCode.FLOW_CONTROL_ERROR, "INITIAL_WINDOW_SIZE too large");
        }
        const delta = value - this.#peerInitialWindow;
        this.#peerInitialWindow = value;
        for (const s of this.#streams.values()) {
          s.sendWindow += delta;
          if (s.sendWindow > MAX_WINDOW) {
            throw new ConnectionError(ErrorCode.FLOW_CONTROL_ERROR, "stream window overflow");
          }
          if (delta > 0 && s.queue.length > 0) this.#markReady(s);
        }
      } else if (id === Setting.MAX_FRAME_SIZE) {
        if (value < DEFAULT_MAX_FRAME_SIZE || value > 0xff_ffff) {
          throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "MAX_FRAME_SIZE out of range");
        }
        // Stay at 16 KB anyway: smaller frames interleave streams better.
        this.#peerMaxFrame = DEFAULT_MAX_FRAME_SIZE;
      } else if (id === Setting.ENABLE_PUSH && value > 1) {
        throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "ENABLE_PUSH must be 0 or 1");
      }
    }
    this.#queueControl(frame(FrameType.SETTINGS, Flag.ACK, 0));
  }

  #onWindowUpdate(streamId: number, payload: Uint8Array): void {
    if (payload.length !== 4) {
      throw new ConnectionError(ErrorCode.FRAME_SIZE_ERROR, "WINDOW_UPDATE of the wrong size");
    }
    const increment = new DataView(payload.buffer, payload.byteOffset, 4).getUint32(0) &
      MAX_WINDOW;
    if (streamId === 0) {
      if (increment === 0) {
        throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "WINDOW_UPDATE of 0");
      }
      this.#sendConnWindow += increment;
      if (this.#sendConnWindow > MAX_WINDOW) {
        throw new ConnectionError(ErrorCode.FLOW_CONTROL_ERROR, "connection window overflow");
      }
      return;
    }
    const s = this.#streams.get(streamId);
    if (!s) return; // a stream that just closed
    if (increment === 0 || s.sendWindow + increment > MAX_WINDOW) {
      this.resetStream(
        s,
        increment === 0 ? ErrorCode.PROTOCOL_ERROR : ErrorCode.FLOW_CONTROL_ERROR,
      );
      return;
    }
    s.sendWindow += increment;
    if (s.queue.length > 0 || (s.ended && !s.localEnded)) this.#markReady(s);
  }

  #markReady(s: Stream): void {
    if (!s.inReady && !s.closed) {
      s.inReady = true;
      this.#ready.push(s);
    }
  }

  #onData(flags: number, streamId: number, payload: Uint8Array): void {
    if (streamId === 0) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "DATA on stream 0");
    let data = payload;
    if (flags & Flag.PADDED) data = unpad(payload);
    // Flow control counts the whole payload, padding included.
    this.#recvConnWindow -= payload.length;
    if (this.#recvConnWindow < 0) {
      throw new ConnectionError(ErrorCode.FLOW_CONTROL_ERROR, "connection window exceeded");
    }
    if (payload.length > 0) {
      this.#recvConnWindow += payload.length;
      this.#queueControl(windowUpdateFrame(0, payload.length));
    }
    const s = this.#streams.get(streamId);
    if (!s) {
      if (streamId > this.#highestStreamId) {
        throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "DATA on an idle stream");
      }
      return; // late data for a stream we closed
    }
    if (s.remoteEnded) {
      this.resetStream(s, ErrorCode.STREAM_CLOSED);
      return;
    }
    if (s.bodyBytes + data.length <= this.#maxBody && s.overflowBytes === 0) {
      if (data.length > 0) {
        if (this.#heldBodyBytes + data.length > RECV_CONN_WINDOW) {
          throw new ConnectionError(ErrorCode.ENHANCE_YOUR_CALM, "too much unread request body");
        }
        s.bodyChunks.push(data.slice());
        s.bodyBytes += data.length;
        s.heldBytes += data.length;
        this.#heldBodyBytes += data.length;
      }
      // Keep the stream's window open while we are still keeping what it sends.
      if (payload.length > 0) this.#queueControl(windowUpdateFrame(streamId, payload.length));
    } else {
      s.overflowBytes += data.length;
    }
    if (flags & Flag.END_STREAM) s.remoteEnded = true;
    s.bodyProgress();
    if (s.remoteEnded && s.localEnded) this.#closeStream(s, false);
  }

  #onHeaders(flags: number, streamId: number, payload: Uint8Array): void {
    if (streamId === 0) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "HEADERS on stream 0");
    let block = payload;
    if (flags & Flag.PADDED) block = unpad(block);
    if (flags & Flag.PRIORITY) {
      if (block.length < 5) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "short HEADERS");
      block = block.subarray(5);
    }
    const endStream = (flags & Flag.END_STREAM) !== 0;
    if (flags & Flag.END_HEADERS) this.#headersComplete(streamId, endStream, block);
    else this.#headerBlock = { streamId, endStream, pieces: [block.slice()] };
  }

  #onContinuation(flags: number, streamId: number, payload: Uint8Array): void {
    const hb = this.#headerBlock;
    if (!hb || hb.streamId !== streamId) {
      throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "unexpected CONTINUATION");
    }
    hb.pieces.push(payload.slice());
    const size = hb.pieces.reduce((n, p) => n + p.length, 0);
    if (size > this.#hpack.maxHeaderListSize) {
      throw new ConnectionError(ErrorCode.ENHANCE_YOUR_CALM, "header block too large");
    }
    if (flags & Flag.END_HEADERS) {
      this.#headerBlock = null;
      const block = new Uint8Array(size);
      let off = 0;
      for (const p of hb.pieces) {
        block.set(p, off);
        off += p.length;
      }
      this.#headersComplete(streamId, hb.endStream, block);
    }
  }

  #headersComplete(streamId: number, endStream: boolean, block: Uint8Array): void {
    // Decode first, always: the table must follow every block, even a refused one.
    const fields = this.#hpack.decode(block);
    const existing = this.#streams.get(streamId);
    if (existing) {
      // Trailers: they must end the stream.
      if (!endStream || existing.remoteEnded) {
        throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "HEADERS in the middle of a stream");
      }
      existing.remoteEnded = true;
      existing.bodyProgress();
      if (existing.localEnded) this.#closeStream(existing, false);
      return;
    }
    if (streamId % 2 === 0) {
      throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, `bad stream id ${streamId}`);
    }
    if (streamId <= this.#highestStreamId) {
      // Trailers (they end the stream) of one we already answered and reset are ignored
      // (RFC 9113 §5.1); a HEADERS that would reopen an old id is a protocol error.
      if (endStream && this.#resetIds.has(streamId)) return;
      throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, `bad stream id ${streamId}`);
    }
    this.#highestStreamId = streamId;
    if (this.#goingAway) {
      this.#queueControl(rstStreamFrame(streamId, ErrorCode.REFUSED_STREAM));
      return;
    }
    if (this.#streams.size >= this.#maxStreams) {
      this.#queueControl(rstStreamFrame(streamId, ErrorCode.REFUSED_STREAM));
      return;
    }
    const headers = new Map<string, string>();
    let method = "";
    let path = "";
    for (const [name, value] of fields) {
      if (name === ":method") method = value;
      else if (name === ":path") path = value;
      else if (!name.startsWith(":")) {
        const prev = headers.get(name);
        headers.set(name, prev === undefined ? value : `${prev}, ${value}`);
      }
    }
    if (method === "" || path === "") {
      this.#queueControl(rstStreamFrame(streamId, ErrorCode.PROTOCOL_ERROR));
      return;
    }
    const s = new Stream(this, streamId, method, path, headers, this.#peerInitialWindow);
    s.remoteEnded = endStream;
    this.#streams.set(streamId, s);
    try {
      this.#handler(s, s);
    } catch {
      this.resetStream(s, ErrorCode.INTERNAL_ERROR);
    }
  }
}

function unpad(payload: Uint8Array): Uint8Array {
  if (payload.length < 1) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "bad padding");
  const pad = payload[0];
  if (pad >= payload.length) {
    throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "padding longer than the frame");
  }
  return payload.subarray(1, payload.length - pad);
}
