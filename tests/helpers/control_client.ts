/**
 * A minimal control client: HTTP/2 requests to /machine/register and /machine/map over any
 * Duplex (a Noise connection, or an in-memory pair for tests and benchmarks), and a reader for
 * the framed map stream. It is what our tests and benchmarks use to play a tailscaled.
 */
import { type ClientHttp2Session, type ClientHttp2Stream, connect } from "node:http2";
import { Duplex } from "node:stream";
import { setImmediate } from "node:timers";
import { decodeFrames } from "../../lib/mapper/framing.ts";
import type { MapRequest, MapResponse, RegisterRequest } from "../../lib/tailcfg/types.ts";

/**
 * Two connected in-memory Duplex ends (like a socketpair). Bytes are delivered on a later turn
 * of the event loop, as a socket would: synchronous delivery re-enters the HTTP/2 session
 * (nghttp2 is not re-entrant) and crashed Deno with "free(): invalid pointer".
 */
export function duplexPair(): [Duplex, Duplex] {
  const make = (peer: () => Duplex) =>
    new Duplex({
      read() {},
      write(chunk, _enc, cb) {
        setImmediate(() => {
          if (!peer().destroyed) peer().push(chunk);
          cb();
        });
      },
      final(cb) {
        setImmediate(() => {
          if (!peer().destroyed) peer().push(null);
          cb();
        });
      },
      destroy(err, cb) {
        const p = peer();
        if (!p.destroyed) p.destroy();
        cb(err);
      },
    });
  const a: Duplex = make(() => b);
  const b: Duplex = make(() => a);
  return [a, b];
}

export interface HttpReply {
  status: number;
  body: Uint8Array;
  text: string;
}

/** Reads a framed map stream: `next()` resolves with each message's JSON. */
export class MapStreamReader {
  private buf: Uint8Array = new Uint8Array(0);
  private readonly queue: string[] = [];
  private waiters: Array<{ resolve: (m: MapResponse | null) => void; reject: (e: Error) => void }> =
    [];
  private ended = false;
  private error: Error | null = null;
  /** Raw JSON of every message received, in order. */
  readonly raw: string[] = [];
  status: Promise<number>;

  constructor(private readonly stream: ClientHttp2Stream, private readonly zstd: boolean) {
    this.status = new Promise((resolve, reject) => {
      stream.once("response", (h) => resolve(Number(h[":status"])));
      stream.once("error", reject);
    });
    stream.on("data", (chunk: Uint8Array) => this.onData(chunk));
    stream.on("end", () => this.finish(null));
    stream.on("close", () => this.finish(null));
    stream.on("error", (e) => this.finish(e));
  }

  private onData(chunk: Uint8Array): void {
    const joined = new Uint8Array(this.buf.byteLength + chunk.byteLength);
    joined.set(this.buf);
    joined.set(chunk, this.buf.byteLength);
    try {
      const { messages, rest } = decodeFrames(joined, this.zstd);
      this.buf = rest.slice();
      for (const m of messages) {
        this.raw.push(m);
        this.queue.push(m);
      }
    } catch (e) {
      this.finish(e as Error);
      return;
    }
    this.pump();
  }

  private finish(err: Error | null): void {
    if (this.ended) return;
    this.ended = true;
    this.error = err;
    this.pump();
  }

  private pump(): void {
    while (this.waiters.length > 0 && this.queue.length > 0) {
      this.waiters.shift()!.resolve(JSON.parse(this.queue.shift()!));
    }
    if (this.ended) {
      for (const w of this.waiters.splice(0)) {
        if (this.error) w.reject(this.error);
        else w.resolve(null);
      }
    }
  }

  /** The next message, or null when the stream ended. Rejects after `timeoutMs`. */
  next(timeoutMs = 10_000): Promise<MapResponse | null> {
    if (this.queue.length > 0) return Promise.resolve(JSON.parse(this.queue.shift()!));
    if (this.ended) {
      return this.error ? Promise.reject(this.error) : Promise.resolve(null);
    }
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== waiter);
        reject(new Error(`no map message within ${timeoutMs} ms`));
      }, timeoutMs);
      const waiter = {
        resolve: (m: MapResponse | null) => {
          clearTimeout(timer);
          resolve(m);
        },
        reject: (e: Error) => {
          clearTimeout(timer);
          reject(e);
        },
      };
      this.waiters.push(waiter);
    });
  }

  /** The next message that is not a keep-alive. */
  async nextUpdate(timeoutMs = 10_000): Promise<MapResponse | null> {
    for (;;) {
      const m = await this.next(timeoutMs);
      if (m === null || !m.KeepAlive) return m;
    }
  }

  get isEnded(): boolean {
    return this.ended;
  }

  close(): void {
    if (!this.stream.destroyed) this.stream.close();
  }
}

export class ControlClient {
  constructor(readonly session: ClientHttp2Session) {
    session.on("error", () => {});
  }

  /** HTTP/2 with prior knowledge over `conn`, as tailscaled speaks inside Noise. */
  static over(conn: Duplex): ControlClient {
    return new ControlClient(connect("http://unused", { createConnection: () => conn }));
  }

  request(method: string, path: string, body?: string | Uint8Array): Promise<HttpReply> {
    return new Promise((resolve, reject) => {
      const stream = this.session.request({ ":method": method, ":path": path });
      const chunks: Uint8Array[] = [];
      let status = 0;
      stream.on("response", (h) => status = Number(h[":status"]));
      stream.on("data", (c: Uint8Array) => chunks.push(c));
      stream.on("end", () => {
        const total = chunks.reduce((n, c) => n + c.byteLength, 0);
        const out = new Uint8Array(total);
        let off = 0;
        for (const c of chunks) {
          out.set(c, off);
          off += c.byteLength;
        }
        resolve({ status, body: out, text: new TextDecoder().decode(out) });
      });
      stream.on("error", reject);
      stream.end(body);
    });
  }

  post(path: string, body: unknown): Promise<HttpReply> {
    return this.request(
      "POST",
      path,
      typeof body === "string" || body instanceof Uint8Array ? body : JSON.stringify(body),
    );
  }

  register(req: Partial<RegisterRequest>): Promise<HttpReply> {
    return this.post("/machine/register", req);
  }

  /** Opens a map request and returns a reader for its framed response. */
  map(req: Partial<MapRequest>): MapStreamReader {
    const stream = this.session.request({ ":method": "POST", ":path": "/machine/map" });
    stream.end(JSON.stringify(req));
    return new MapStreamReader(stream, req.Compress === "zstd");
  }

  close(): void {
    if (!this.session.destroyed) this.session.destroy();
  }
}
