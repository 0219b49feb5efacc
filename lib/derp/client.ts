/**
 * A small DERP client for tests and benchmarks: HTTP upgrade (plain DERP or WebSocket), the
 * handshake, sending and receiving packets, ping. Real nodes use tailscaled's own client.
 */
import { Buffer } from "node:buffer";
import { randomBytes } from "node:crypto";
import net from "node:net";
import tls from "node:tls";
import type { Duplex } from "node:stream";
import { BoxPrivateKey, openBox, sealBox } from "./naclbox.ts";
import {
  encodeFrame,
  equalBytes,
  FRAME_HEADER_LEN,
  FrameError,
  FrameReader,
  FrameType,
  KEY_LEN,
  MAGIC,
  NONCE_LEN,
  PROTOCOL_VERSION,
  writeHeader,
} from "./frame.ts";
import { nodeKeyText } from "./keys.ts";
import { toHex } from "../tailcfg/keys.ts";
import { webSocketAccept, WebSocketStream } from "./websocket.ts";

export type DerpMessage =
  | { type: "packet"; source: Uint8Array; data: Uint8Array }
  | { type: "peerGone"; peer: Uint8Array; reason: number }
  | { type: "peerPresent"; peer: Uint8Array }
  | { type: "keepAlive" }
  | { type: "ping"; data: Uint8Array }
  | { type: "pong"; data: Uint8Array }
  | { type: "health"; problem: string }
  | { type: "restarting"; reconnectInMs: number; tryForMs: number }
  | { type: "serverInfo"; info: Record<string, unknown> };

export interface UpgradeOptions {
  /** Speak DERP inside WebSocket binary messages (subprotocol "derp"). */
  websocket?: boolean;
  /** Extra request headers. */
  headers?: Record<string, string>;
  timeoutMs?: number;
  /** For https URLs: skip certificate verification (InsecureForTests). */
  insecure?: boolean;
  /** For https URLs: PEM certificates to trust instead of the default roots (a private CA). */
  ca?: string | string[];
}

export interface UpgradedStream {
  stream: Duplex;
  /** Bytes that arrived after the 101 response (the start of the DERP stream). */
  head: Uint8Array;
  status: number;
  headers: Record<string, string>;
}

/**
 * Dials `url` (http:// or https://, path /derp) and performs the upgrade. Resolves with the
 * raw DERP byte stream; rejects with the status line when the server does not switch.
 */
export function openDerpStream(
  url: string | URL,
  opts: UpgradeOptions = {},
): Promise<UpgradedStream> {
  const u = new URL(url);
  const secure = u.protocol === "https:" || u.protocol === "wss:";
  const port = Number(u.port) || (secure ? 443 : 80);
  const host = u.hostname.replace(/^\[|\]$/g, "");
  const wsKey = opts.websocket ? Buffer.from(randomBytes(16)).toString("base64") : "";
  const lines = [
    `GET ${u.pathname}${u.search} HTTP/1.1`,
    `Host: ${u.host}`,
    "Connection: Upgrade",
    ...(opts.websocket
      ? [
        "Upgrade: websocket",
        `Sec-WebSocket-Key: ${wsKey}`,
        "Sec-WebSocket-Version: 13",
        "Sec-WebSocket-Protocol: derp",
      ]
      : ["Upgrade: DERP"]),
    ...Object.entries(opts.headers ?? {}).map(([k, v]) => `${k}: ${v}`),
  ];
  const request = lines.join("\r\n") + "\r\n\r\n";

  return new Promise((resolve, reject) => {
    const socket: net.Socket = secure
      ? tls.connect({
        host,
        port,
        servername: net.isIP(host) ? undefined : host,
        rejectUnauthorized: !opts.insecure,
        ...(opts.ca ? { ca: opts.ca } : {}),
      })
      : net.connect({ host, port });
    socket.setNoDelay(true);
    const timer = setTimeout(
      () => fail(new Error("DERP upgrade timed out")),
      opts.timeoutMs ?? 10_000,
    );
    let buf = new Uint8Array(0);
    const fail = (e: Error) => {
      clearTimeout(timer);
      socket.destroy();
      reject(e);
    };
    const onData = (chunk: Uint8Array) => {
      const joined = new Uint8Array(buf.length + chunk.length);
      joined.set(buf);
      joined.set(chunk, buf.length);
      buf = joined;
      const end = indexOfHeaderEnd(buf);
      if (end < 0) {
        if (buf.length > 16 << 10) fail(new Error("DERP upgrade: response header too long"));
        return;
      }
      socket.off("data", onData);
      socket.off("error", fail);
      clearTimeout(timer);
      const text = new TextDecoder().decode(buf.subarray(0, end));
      const [statusLine, ...headerLines] = text.split("\r\n");
      const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(statusLine)?.[1] ?? 0);
      const headers: Record<string, string> = {};
      for (const l of headerLines) {
        const i = l.indexOf(":");
        if (i > 0) headers[l.slice(0, i).trim().toLowerCase()] = l.slice(i + 1).trim();
      }
      if (status !== 101) {
        socket.destroy();
        const body = new TextDecoder().decode(buf.subarray(end + 4)).trim();
        return reject(new Error(`DERP upgrade refused: ${statusLine}${body ? ` (${body})` : ""}`));
      }
      if (opts.websocket && headers["sec-websocket-accept"] !== webSocketAccept(wsKey)) {
        socket.destroy();
        return reject(new Error("DERP upgrade: bad Sec-WebSocket-Accept"));
      }
      const head = buf.subarray(end + 4);
      if (opts.websocket) {
        const ws = new WebSocketStream(socket, { role: "client" });
        ws.feed(head);
        resolve({ stream: ws, head: new Uint8Array(0), status, headers });
      } else {
        resolve({ stream: socket, head, status, headers });
      }
    };
    socket.on("data", onData);
    socket.on("error", fail);
    socket.on("connect", () => socket.write(request));
  });
}

/** A plain Uint8Array copy (never a Buffer view of a socket chunk). */
function copy(b: Uint8Array): Uint8Array {
  return new Uint8Array(b);
}

function indexOfHeaderEnd(b: Uint8Array): number {
  for (let i = 0; i + 3 < b.length; i++) {
    if (b[i] === 13 && b[i + 1] === 10 && b[i + 2] === 13 && b[i + 3] === 10) return i;
  }
  return -1;
}

export interface DerpClientOptions extends UpgradeOptions {
  /** e.g. "http://127.0.0.1:8080/derp". */
  url: string | URL;
  /** The node private key (32 bytes); a random one when absent. */
  privateKey?: Uint8Array;
  /** Fast path for received packets; when set they skip the recv() queue. */
  onPacket?: (source: Uint8Array, data: Uint8Array) => void;
  /** Extra fields for the ClientInfo JSON. */
  clientInfo?: Record<string, unknown>;
}

const MAX_CLIENT_FRAME = 1 << 20;

export class DerpClient {
  readonly publicKey: Uint8Array;
  /** `nodekey:<hex>` of publicKey. */
  readonly nodeKey: string;
  serverPublicKey: Uint8Array = new Uint8Array(KEY_LEN);
  /** Resolves when the stream has closed. */
  readonly closed: Promise<void>;
  /** Set when the stream failed (protocol error or socket error). */
  error?: Error;

  private readonly boxKey: BoxPrivateKey;
  private stream!: Duplex;
  private reader!: FrameReader;
  private readonly queue: DerpMessage[] = [];
  private readonly waiters: {
    resolve: (m: DerpMessage) => void;
    reject: (e: Error) => void;
  }[] = [];
  private readonly pongWaiters = new Map<string, () => void>();
  private gotServerKey = false;
  private serverKeyWaiter?: { resolve: () => void; reject: (e: Error) => void };
  private isClosed = false;
  private resolveClosed!: () => void;
  private corked = false;

  private constructor(private readonly opts: DerpClientOptions) {
    const priv = opts.privateKey ?? new Uint8Array(randomBytes(32));
    this.boxKey = new BoxPrivateKey(priv);
    this.publicKey = this.boxKey.publicKey;
    this.nodeKey = nodeKeyText(this.publicKey);
    this.closed = new Promise((r) => this.resolveClosed = r);
  }

  /** Connects, upgrades and completes the handshake (ServerKey → ClientInfo). */
  static async connect(opts: DerpClientOptions): Promise<DerpClient> {
    const c = new DerpClient(opts);
    const { stream, head } = await openDerpStream(opts.url, opts);
    await c.attach(stream, head);
    return c;
  }

  private attach(stream: Duplex, head: Uint8Array): Promise<void> {
    this.stream = stream;
    this.reader = new FrameReader(
      (_type, len) =>
        len > MAX_CLIENT_FRAME ? new FrameError(`frame of ${len} bytes from server`) : "deliver",
      (type, payload) => this.onFrame(type, payload),
      (err) => this.fail(err),
    );
    const serverKey = new Promise<void>((resolve, reject) => {
      this.serverKeyWaiter = { resolve, reject };
    });
    stream.on("data", (chunk: Uint8Array) => this.reader.push(chunk));
    stream.on("error", (e: Error) => this.fail(e));
    stream.on("close", () => this.onClose());
    stream.on("end", () => stream.end());
    if (head.length > 0) this.reader.push(head);
    return serverKey.then(() => this.sendClientInfo());
  }

  private sendClientInfo(): void {
    const nonce = new Uint8Array(randomBytes(NONCE_LEN));
    const info = { version: PROTOCOL_VERSION, CanAckPings: true, ...this.opts.clientInfo };
    const msg = new TextEncoder().encode(JSON.stringify(info));
    const box = sealBox(this.boxKey.sharedKey(this.serverPublicKey), nonce, msg);
    this.write(encodeFrame(FrameType.ClientInfo, this.publicKey, nonce, box));
  }

  private onFrame(type: number, p: Uint8Array): void {
    if (!this.gotServerKey) {
      if (
        type !== FrameType.ServerKey || p.length < MAGIC.length + KEY_LEN ||
        !equalBytes(p.subarray(0, MAGIC.length), MAGIC)
      ) {
        return this.fail(new Error("first frame from server is not a valid ServerKey"));
      }
      this.gotServerKey = true;
      this.serverPublicKey = copy(p.subarray(MAGIC.length, MAGIC.length + KEY_LEN));
      this.serverKeyWaiter?.resolve();
      return;
    }
    switch (type) {
      case FrameType.RecvPacket: {
        if (p.length < KEY_LEN) return;
        const source = p.subarray(0, KEY_LEN);
        const data = p.subarray(KEY_LEN);
        if (this.opts.onPacket) return this.opts.onPacket(source, data);
        return this.deliver({ type: "packet", source: copy(source), data: copy(data) });
      }
      case FrameType.ServerInfo: {
        if (p.length < NONCE_LEN) return this.fail(new Error("short ServerInfo"));
        const shared = this.boxKey.sharedKey(this.serverPublicKey);
        const msg = openBox(shared, p.subarray(0, NONCE_LEN), p.subarray(NONCE_LEN));
        if (!msg) return this.fail(new Error("ServerInfo does not open"));
        return this.deliver({
          type: "serverInfo",
          info: JSON.parse(new TextDecoder().decode(msg)),
        });
      }
      case FrameType.KeepAlive:
        return this.deliver({ type: "keepAlive" });
      case FrameType.PeerGone:
        if (p.length < KEY_LEN) return;
        return this.deliver({
          type: "peerGone",
          peer: copy(p.subarray(0, KEY_LEN)),
          reason: p.length > KEY_LEN ? p[KEY_LEN] : 0,
        });
      case FrameType.PeerPresent:
        if (p.length < KEY_LEN) return;
        return this.deliver({ type: "peerPresent", peer: copy(p.subarray(0, KEY_LEN)) });
      case FrameType.Ping:
        if (p.length < 8) return;
        this.write(encodeFrame(FrameType.Pong, p.subarray(0, 8)));
        return this.deliver({ type: "ping", data: copy(p.subarray(0, 8)) });
      case FrameType.Pong: {
        if (p.length < 8) return;
        const data = copy(p.subarray(0, 8));
        const waiter = this.pongWaiters.get(toHex(data));
        if (waiter) {
          this.pongWaiters.delete(toHex(data));
          return waiter();
        }
        return this.deliver({ type: "pong", data });
      }
      case FrameType.Health:
        return this.deliver({ type: "health", problem: new TextDecoder().decode(p) });
      case FrameType.Restarting: {
        if (p.length < 8) return;
        const v = new DataView(p.buffer, p.byteOffset, 8);
        return this.deliver({
          type: "restarting",
          reconnectInMs: v.getUint32(0),
          tryForMs: v.getUint32(4),
        });
      }
      default:
        return; // unknown frames are skipped
    }
  }

  private deliver(m: DerpMessage): void {
    const w = this.waiters.shift();
    if (w) w.resolve(m);
    else this.queue.push(m);
  }

  /**
   * The next message (packets only when no onPacket handler is set). Rejects after
   * `timeoutMs` or when the connection is closed with nothing left to read.
   */
  recv(timeoutMs = 5_000): Promise<DerpMessage> {
    const m = this.queue.shift();
    if (m) return Promise.resolve(m);
    if (this.isClosed) return Promise.reject(this.error ?? new Error("DERP connection closed"));
    return new Promise((resolve, reject) => {
      const waiter = {
        resolve: (msg: DerpMessage) => {
          clearTimeout(timer);
          resolve(msg);
        },
        reject: (e: Error) => {
          clearTimeout(timer);
          reject(e);
        },
      };
      const timer = setTimeout(() => {
        const i = this.waiters.indexOf(waiter);
        if (i >= 0) this.waiters.splice(i, 1);
        reject(new Error(`no DERP message within ${timeoutMs} ms`));
      }, timeoutMs);
      this.waiters.push(waiter);
    });
  }

  /** Waits for the first message of a type, dropping others before it. */
  async recvType<T extends DerpMessage["type"]>(
    type: T,
    timeoutMs = 5_000,
  ): Promise<Extract<DerpMessage, { type: T }>> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const m = await this.recv(Math.max(1, deadline - Date.now()));
      if (m.type === type) return m as Extract<DerpMessage, { type: T }>;
    }
  }

  /**
   * Sends a packet to `dst`. Returns false when the socket buffer is full (wait for drain()).
   */
  send(dst: Uint8Array, packet: Uint8Array): boolean {
    const head = new Uint8Array(FRAME_HEADER_LEN + KEY_LEN);
    writeHeader(head, 0, FrameType.SendPacket, KEY_LEN + packet.length);
    head.set(dst, FRAME_HEADER_LEN);
    this.cork();
    this.stream.write(head);
    return this.stream.write(packet);
  }

  /** Resolves when the socket buffer has drained. */
  drain(): Promise<void> {
    if (!this.stream.writableNeedDrain) return Promise.resolve();
    return new Promise((resolve) => this.stream.once("drain", () => resolve()));
  }

  notePreferred(preferred: boolean): void {
    this.write(encodeFrame(FrameType.NotePreferred, Uint8Array.of(preferred ? 1 : 0)));
  }

  /** Sends a Ping and resolves with the round-trip time in ms when the Pong arrives. */
  ping(timeoutMs = 5_000): Promise<number> {
    const data = new Uint8Array(randomBytes(8));
    const started = performance.now();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pongWaiters.delete(toHex(data));
        reject(new Error(`no DERP pong within ${timeoutMs} ms`));
      }, timeoutMs);
      this.pongWaiters.set(toHex(data), () => {
        clearTimeout(timer);
        resolve(performance.now() - started);
      });
      this.write(encodeFrame(FrameType.Ping, data));
    });
  }

  /** Writes raw bytes (tests of malformed input). */
  writeRaw(bytes: Uint8Array): void {
    this.write(bytes);
  }

  close(): Promise<void> {
    if (!this.isClosed) this.stream.end();
    const t = setTimeout(() => this.stream.destroy(), 1_000);
    return this.closed.then(() => clearTimeout(t));
  }

  private write(bytes: Uint8Array): void {
    if (this.isClosed || this.stream.writableEnded) return;
    this.cork();
    this.stream.write(bytes);
  }

  private cork(): void {
    if (this.corked) return;
    this.corked = true;
    this.stream.cork();
    queueMicrotask(() => {
      this.corked = false;
      this.stream.uncork();
    });
  }

  private fail(e: Error): void {
    this.error ??= e;
    this.serverKeyWaiter?.reject(e);
    this.stream.destroy();
  }

  private onClose(): void {
    if (this.isClosed) return;
    this.isClosed = true;
    const e = this.error ?? new Error("DERP connection closed");
    this.serverKeyWaiter?.reject(e);
    for (const w of this.waiters.splice(0)) w.reject(e);
    this.resolveClosed();
  }
}
