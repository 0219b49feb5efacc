/**
 * The DERP relay core: handshake, packet forwarding between connected node keys, keepalives,
 * ping/pong, PeerGone, duplicate keys (newest connection wins) and graceful restart notices.
 * It takes byte streams that are already past the HTTP upgrade; HTTP glue is in http.ts.
 *
 * Forwarding copies nothing: a SendPacket frame (type, len, dst key, packet) and the RecvPacket
 * it becomes (type, len, src key, packet) have the same size, so the received bytes are
 * rewritten in place and handed to the destination socket. A slow reader never blocks anyone:
 * once its socket buffer passes a bound, packets for it are dropped (disco packets get a little
 * more room), and a reader stuck for `stallTimeoutMs` is disconnected.
 */
import { randomBytes } from "node:crypto";
import type { Duplex } from "node:stream";
import type { Logger } from "../log/log.ts";
import { BoxPrivateKey, openBox, sealBox } from "./naclbox.ts";
import {
  encodeFrame,
  FRAME_HEADER_LEN,
  FrameError,
  FrameReader,
  FrameType,
  type FrameVerdict,
  KEY_LEN,
  looksLikeDisco,
  MAGIC,
  MAX_PACKET_SIZE,
  NONCE_LEN,
  PeerGoneReason,
  PROTOCOL_VERSION,
} from "./frame.ts";
import { keyId, nodeKeyText, parseNodeKeyText, shortKey } from "./keys.ts";
import { toHex } from "../tailcfg/keys.ts";

export interface VerifyInfo {
  /** The client's address as the socket saw it ("" when unknown). */
  remoteAddress: string;
}

export interface DerpServerOptions {
  /** The DERP server's Curve25519 private key (32 raw bytes); not the Noise key. */
  privateKey: Uint8Array;
  /** Admission control: called with `nodekey:<hex>` after the client proved it holds the key. */
  verifyClient?: (nodeKey: string, info: VerifyInfo) => boolean | Promise<boolean>;
  log: Logger;
  /** KeepAlive interval; each connection adds up to 1/12 of it (5 s at 60 s) as jitter. */
  keepAliveMs?: number;
  /** Time from accept to a verified ClientInfo before the connection is dropped (10 s). */
  handshakeTimeoutMs?: number;
  /** Bytes waiting in a client's socket beyond which packets to it are dropped (1 MiB). */
  maxQueuedBytes?: number;
  /** A client whose socket stays over that bound this long is disconnected (15 s). */
  stallTimeoutMs?: number;
  /** What graceful close() advertises in its Restarting frame. */
  restart?: { reconnectInMs: number; tryForMs: number };
  now?: () => number;
}

export interface AcceptOptions {
  /** Bytes already read from the stream after the HTTP request (node:http's `head`). */
  head?: Uint8Array;
  remoteAddress?: string;
}

export interface DerpStats {
  /** Open connections, including those still in the handshake. */
  connections: number;
  /** Connections that finished the handshake. */
  clients: number;
  /** Distinct node keys among them. */
  uniqueKeys: number;
  /** Clients that said this is their home region. */
  homeClients: number;
  accepts: number;
  handshakeFailures: number;
  rejected: number;
  packetsForwarded: number;
  bytesForwarded: number;
  droppedUnknownDest: number;
  droppedQueueFull: number;
  peerGoneDisconnected: number;
  peerGoneNotHere: number;
  pongs: number;
}

const MIN_CLIENT_INFO_LEN = KEY_LEN + NONCE_LEN;
const MAX_CLIENT_INFO_LEN = 256 << 10;
const MAX_PING_LEN = 1000;
/** Frames a client may send while its admission check runs, by total bytes. */
const MAX_HELD_BYTES = 1 << 20;
const DUPLICATE_PROBLEM =
  "this node key is connected to this DERP server more than once; a newer connection is in use";

const KEEPALIVE_FRAME = encodeFrame(FrameType.KeepAlive);

type ConnState = "handshake" | "verifying" | "active" | "closed";

export class DerpServer {
  readonly publicKey: Uint8Array;
  /** Lowercase hex of the public key, as the Derp-Public-Key header carries it. */
  readonly publicKeyHex: string;

  private readonly boxKey: BoxPrivateKey;
  private readonly log: Logger;
  private readonly verify?: DerpServerOptions["verifyClient"];
  readonly keepAliveMs: number;
  readonly handshakeTimeoutMs: number;
  readonly maxQueuedBytes: number;
  readonly stallTimeoutMs: number;
  private readonly restart: { reconnectInMs: number; tryForMs: number };
  readonly now: () => number;

  private readonly conns = new Set<ClientConn>();
  /** Registered connections per key id; the last one is the active one (newest wins). */
  private readonly byKey = new Map<string, ClientConn[]>();
  /** For each source key id: the connections that received packets from it. */
  private readonly peerGoneWatchers = new Map<string, Set<ClientConn>>();
  private closed = false;
  private closing?: Promise<void>;
  private readonly counters = {
    accepts: 0,
    handshakeFailures: 0,
    rejected: 0,
    packetsForwarded: 0,
    bytesForwarded: 0,
    droppedUnknownDest: 0,
    droppedQueueFull: 0,
    peerGoneDisconnected: 0,
    peerGoneNotHere: 0,
    pongs: 0,
  };
  private homeClients = 0;

  constructor(opts: DerpServerOptions) {
    this.boxKey = new BoxPrivateKey(opts.privateKey);
    this.publicKey = this.boxKey.publicKey;
    this.publicKeyHex = toHex(this.publicKey);
    this.log = opts.log;
    this.verify = opts.verifyClient;
    this.keepAliveMs = opts.keepAliveMs ?? 60_000;
    this.handshakeTimeoutMs = opts.handshakeTimeoutMs ?? 10_000;
    this.maxQueuedBytes = opts.maxQueuedBytes ?? 1 << 20;
    this.stallTimeoutMs = opts.stallTimeoutMs ?? 15_000;
    this.restart = opts.restart ?? { reconnectInMs: 0, tryForMs: 5_000 };
    this.now = opts.now ?? (() => performance.now());
  }

  /**
   * Serves one client over `stream` until either side closes. The server takes ownership of
   * the chunks it reads (forwarded frames are rewritten in place).
   */
  accept(stream: Duplex, opts: AcceptOptions = {}): void {
    if (this.closed) {
      stream.destroy();
      return;
    }
    this.counters.accepts++;
    const remoteAddress = opts.remoteAddress ??
      formatRemote(
        (stream as { remoteAddress?: string }).remoteAddress,
        (stream as {
          remotePort?: number;
        }).remotePort,
      );
    const conn = new ClientConn(this, stream, remoteAddress, this.log);
    this.conns.add(conn);
    conn.start(opts.head);
  }

  /** Whether a client with this `nodekey:…` has a live connection. */
  isConnected(nodeKey: string): boolean {
    const raw = parseNodeKeyText(nodeKey);
    return raw !== null && this.byKey.has(keyId(raw));
  }

  stats(): DerpStats {
    let clients = 0;
    for (const set of this.byKey.values()) clients += set.length;
    return {
      connections: this.conns.size,
      clients,
      uniqueKeys: this.byKey.size,
      homeClients: this.homeClients,
      ...this.counters,
    };
  }

  /**
   * Graceful shutdown: tells every client the server is restarting (so it reconnects soon
   * rather than after its read timeout), closes the connections and waits for them.
   */
  close(graceMs = 1_000): Promise<void> {
    if (this.closing) return this.closing;
    this.closed = true;
    const restarting = new Uint8Array(8);
    const view = new DataView(restarting.buffer);
    view.setUint32(0, this.restart.reconnectInMs);
    view.setUint32(4, this.restart.tryForMs);
    const frame = encodeFrame(FrameType.Restarting, restarting);
    const waits: Promise<void>[] = [];
    for (const conn of this.conns) {
      waits.push(conn.closed);
      if (conn.state === "active") conn.writeControl(frame);
      conn.end();
    }
    let timer: ReturnType<typeof setTimeout> | undefined;
    const grace = new Promise<void>((resolve) => {
      timer = setTimeout(() => {
        for (const conn of this.conns) conn.destroy("server closed");
        resolve();
      }, graceMs);
    });
    this.closing = Promise.race([Promise.all(waits).then(() => {}), grace]).then(async () => {
      clearTimeout(timer);
      await Promise.all(waits);
    });
    return this.closing;
  }

  // ---- used by ClientConn -------------------------------------------------------------

  /** @internal */
  openClientInfo(clientKey: Uint8Array, nonce: Uint8Array, box: Uint8Array): Uint8Array | null {
    let shared: Uint8Array;
    try {
      shared = this.boxKey.sharedKey(clientKey);
    } catch {
      return null;
    }
    return openBox(shared, nonce, box);
  }

  /** @internal */
  serverKeyFrame(): Uint8Array {
    return encodeFrame(FrameType.ServerKey, MAGIC, this.publicKey);
  }

  /** @internal */
  serverInfoFrame(clientKey: Uint8Array): Uint8Array {
    const nonce = new Uint8Array(randomBytes(NONCE_LEN));
    const msg = new TextEncoder().encode(JSON.stringify({ version: PROTOCOL_VERSION }));
    const box = sealBox(this.boxKey.sharedKey(clientKey), nonce, msg);
    return encodeFrame(FrameType.ServerInfo, nonce, box);
  }

  /** @internal */
  async admit(conn: ClientConn): Promise<boolean> {
    if (!this.verify) return true;
    try {
      return (await this.verify(conn.keyText, { remoteAddress: conn.remoteAddress })) === true;
    } catch (e) {
      this.log.warn("derp: admission check failed; refusing client", {
        node: conn.keyShort,
        error: e,
      });
      return false;
    }
  }

  /** @internal */
  noteHandshakeFailure(rejected: boolean): void {
    if (rejected) this.counters.rejected++;
    else this.counters.handshakeFailures++;
  }

  /** @internal */
  register(conn: ClientConn): void {
    const set = this.byKey.get(conn.id);
    if (!set) {
      this.byKey.set(conn.id, [conn]);
      return;
    }
    const previous = set[set.length - 1];
    set.push(conn);
    previous.writeControl(
      encodeFrame(FrameType.Health, new TextEncoder().encode(DUPLICATE_PROBLEM)),
    );
    this.log.info("derp: node key connected again; the newest connection is active", {
      node: conn.keyShort,
      connections: set.length,
    });
  }

  /** @internal */
  unregister(conn: ClientConn): void {
    this.conns.delete(conn);
    if (conn.preferred) this.homeClients--;
    for (const src of conn.sawSrc) {
      const watchers = this.peerGoneWatchers.get(src);
      if (!watchers) continue;
      watchers.delete(conn);
      if (watchers.size === 0) this.peerGoneWatchers.delete(src);
    }
    conn.sawSrc.clear();
    const set = this.byKey.get(conn.id);
    if (!set) return;
    const i = set.indexOf(conn);
    if (i < 0) return;
    const wasActive = i === set.length - 1;
    set.splice(i, 1);
    if (set.length > 0) {
      if (wasActive) set[set.length - 1].writeControl(encodeFrame(FrameType.Health));
      return;
    }
    this.byKey.delete(conn.id);
    this.notePeerGone(conn);
  }

  /** Tells everyone who received packets from `gone` that it left. */
  private notePeerGone(gone: ClientConn): void {
    const watchers = this.peerGoneWatchers.get(gone.id);
    if (!watchers) return;
    this.peerGoneWatchers.delete(gone.id);
    const frame = peerGoneFrame(gone.key, PeerGoneReason.Disconnected);
    for (const w of watchers) {
      w.sawSrc.delete(gone.id);
      if (w.state !== "active") continue;
      w.writeControl(frame);
      this.counters.peerGoneDisconnected++;
    }
  }

  /** @internal Called for each SendPacket; `frame` is rewritten in place when forwarded. */
  forward(src: ClientConn, frame: Uint8Array, payload: Uint8Array): void {
    const dstId = keyId(payload);
    const set = this.byKey.get(dstId);
    if (set === undefined) {
      this.counters.droppedUnknownDest++;
      if (looksLikeDisco(payload.subarray(KEY_LEN)) && src.allowPeerGoneNotHere()) {
        src.writeControl(peerGoneFrame(payload.subarray(0, KEY_LEN), PeerGoneReason.NotHere));
        this.counters.peerGoneNotHere++;
      }
      return;
    }
    const dst = set[set.length - 1];
    const room = dst.room();
    if (room !== "open" && (room === "none" || !looksLikeDisco(payload.subarray(KEY_LEN)))) {
      this.counters.droppedQueueFull++;
      return;
    }
    const packetLen = payload.length - KEY_LEN;
    frame[0] = FrameType.RecvPacket;
    frame.set(src.key, FRAME_HEADER_LEN);
    dst.writePacket(frame);
    this.counters.packetsForwarded++;
    this.counters.bytesForwarded += packetLen;
    if (!dst.sawSrc.has(src.id)) {
      dst.sawSrc.add(src.id);
      let watchers = this.peerGoneWatchers.get(src.id);
      if (!watchers) this.peerGoneWatchers.set(src.id, watchers = new Set());
      watchers.add(dst);
    }
  }

  /** @internal */
  notePong(): void {
    this.counters.pongs++;
  }

  /** @internal */
  notePreferred(delta: number): void {
    this.homeClients += delta;
  }
}

function peerGoneFrame(key: Uint8Array, reason: number): Uint8Array {
  return encodeFrame(FrameType.PeerGone, key, Uint8Array.of(reason));
}

function formatRemote(host: string | undefined, port: number | undefined): string {
  if (!host) return "";
  if (port === undefined) return host;
  return host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`;
}

/** One client connection (Tailscale's sclient). */
class ClientConn {
  state: ConnState = "handshake";
  key = new Uint8Array(KEY_LEN);
  id = "";
  keyText = "";
  keyShort = "";
  preferred = false;
  /** Key ids of the sources this connection received packets from (for PeerGone). */
  readonly sawSrc = new Set<string>();
  readonly closed: Promise<void>;

  private readonly reader: FrameReader;
  private held: Uint8Array[] = [];
  private heldBytes = 0;
  private handshakeTimer?: ReturnType<typeof setTimeout>;
  private keepAliveTimer?: ReturnType<typeof setInterval>;
  private corked = false;
  private fullSince = 0;
  private peerGoneTokens = 3;
  private peerGoneRefilledAt = 0;
  private resolveClosed!: () => void;

  constructor(
    private readonly server: DerpServer,
    private readonly stream: Duplex,
    readonly remoteAddress: string,
    private readonly log: Logger,
  ) {
    this.closed = new Promise((resolve) => this.resolveClosed = resolve);
    this.reader = new FrameReader(
      (type, len) => this.classify(type, len),
      (type, payload, frame) => this.onFrame(type, payload, frame),
      (err) => this.destroy(err.message),
    );
  }

  start(head?: Uint8Array): void {
    const s = this.stream;
    s.on("data", (chunk: Uint8Array) => this.reader.push(chunk));
    s.on("end", () => this.end());
    s.on("error", (e: Error) => this.destroy(`socket error: ${e.message}`));
    s.on("close", () => this.cleanup());
    this.handshakeTimer = setTimeout(
      () => this.destroy("handshake timed out"),
      this.server.handshakeTimeoutMs,
    );
    this.writeControl(this.server.serverKeyFrame());
    if (head && head.length > 0) this.reader.push(head);
  }

  // ---- reading ------------------------------------------------------------------------

  private classify(type: number, len: number): FrameVerdict {
    if (this.state === "handshake") {
      if (type !== FrameType.ClientInfo) {
        return new FrameError(`expected ClientInfo first, got frame type 0x${type.toString(16)}`);
      }
      if (len < MIN_CLIENT_INFO_LEN) return new FrameError("short ClientInfo frame");
      if (len > MAX_CLIENT_INFO_LEN) return new FrameError("ClientInfo frame too long");
      return "deliver";
    }
    switch (type) {
      case FrameType.SendPacket:
        if (len < KEY_LEN) return new FrameError("short SendPacket frame");
        if (len > KEY_LEN + MAX_PACKET_SIZE) {
          return new FrameError(`packet of ${len - KEY_LEN} bytes exceeds ${MAX_PACKET_SIZE}`);
        }
        return "deliver";
      case FrameType.NotePreferred:
        return len === 1 ? "deliver" : new FrameError("NotePreferred frame of wrong size");
      case FrameType.Ping:
        if (len < 8) return new FrameError(`short ping: ${len} bytes`);
        if (len > MAX_PING_LEN) return new FrameError(`ping body too large: ${len} bytes`);
        return "deliver";
      case FrameType.ForwardPacket:
      case FrameType.WatchConns:
      case FrameType.ClosePeer:
        // Mesh frames need a mesh key; this server runs alone and has none.
        return new FrameError(`mesh frame 0x${type.toString(16)} without mesh permission`);
      default:
        // Unknown (and client-irrelevant, e.g. Pong) frames are skipped without buffering.
        return "skip";
    }
  }

  private onFrame(type: number, payload: Uint8Array, frame: Uint8Array): void {
    if (this.state === "active") return this.handleFrame(type, payload, frame);
    if (this.state === "handshake") return this.onClientInfo(payload);
    if (this.state === "verifying") {
      this.heldBytes += frame.length;
      if (this.heldBytes > MAX_HELD_BYTES) return this.destroy("too much data before admission");
      this.held.push(frame);
    }
  }

  private handleFrame(type: number, payload: Uint8Array, frame: Uint8Array): void {
    switch (type) {
      case FrameType.SendPacket:
        this.server.forward(this, frame, payload);
        return;
      case FrameType.Ping: {
        if (this.room() !== "open") return; // pinging faster than it reads: ignore
        this.writeControl(encodeFrame(FrameType.Pong, payload.subarray(0, 8)));
        this.server.notePong();
        return;
      }
      case FrameType.NotePreferred: {
        const preferred = payload[0] !== 0;
        if (preferred !== this.preferred) this.server.notePreferred(preferred ? 1 : -1);
        this.preferred = preferred;
        return;
      }
    }
  }

  private onClientInfo(payload: Uint8Array): void {
    const clientKey = payload.slice(0, KEY_LEN);
    const nonce = payload.subarray(KEY_LEN, KEY_LEN + NONCE_LEN);
    const msg = this.server.openClientInfo(clientKey, nonce, payload.subarray(MIN_CLIENT_INFO_LEN));
    if (msg === null) {
      return this.destroy(`ClientInfo does not open with claimed key ${shortKey(clientKey)}`);
    }
    try {
      const info = JSON.parse(new TextDecoder().decode(msg));
      if (typeof info !== "object" || info === null || Array.isArray(info)) throw new Error();
    } catch {
      return this.destroy("ClientInfo is not a JSON object");
    }
    this.key = clientKey;
    this.id = keyId(clientKey);
    this.keyText = nodeKeyText(clientKey);
    this.keyShort = shortKey(clientKey);
    this.state = "verifying";
    this.server.admit(this).then((ok) => this.onAdmission(ok));
  }

  private onAdmission(ok: boolean): void {
    if (this.state !== "verifying") return; // closed meanwhile
    if (!ok) {
      this.server.noteHandshakeFailure(true);
      this.log.info("derp: client not admitted", {
        node: this.keyShort,
        remote: this.remoteAddress,
      });
      return this.destroy();
    }
    clearTimeout(this.handshakeTimer);
    this.handshakeTimer = undefined;
    this.state = "active";
    this.server.register(this);
    this.writeControl(this.server.serverInfoFrame(this.key));
    this.startKeepAlive();
    this.log.debug("derp: client connected", { node: this.keyShort, remote: this.remoteAddress });
    const held = this.held;
    this.held = [];
    this.heldBytes = 0;
    for (const frame of held) {
      if (this.state !== "active") break;
      this.handleFrame(frame[0], frame.subarray(FRAME_HEADER_LEN), frame);
    }
  }

  private startKeepAlive(): void {
    const base = this.server.keepAliveMs;
    const jitter = Math.floor(Math.random() * Math.min(5_000, base / 12));
    this.keepAliveTimer = setInterval(() => {
      if (this.isStalled()) return this.destroy("client stopped reading");
      this.writeControl(KEEPALIVE_FRAME);
    }, base + jitter);
  }

  // ---- writing ------------------------------------------------------------------------

  /**
   * Room for another packet in this client's socket buffer: "open", room for disco packets
   * only (they keep path discovery going under load), or "none". Notes when the client stopped
   * keeping up and disconnects it once that lasts too long.
   */
  room(): "open" | "disco" | "none" {
    if (this.state !== "active" || this.stream.destroyed) return "none";
    const queued = this.stream.writableLength;
    const limit = this.server.maxQueuedBytes;
    if (queued <= limit) {
      this.fullSince = 0;
      return "open";
    }
    if (this.fullSince === 0) this.fullSince = this.server.now();
    else if (this.isStalled()) {
      this.destroy("client stopped reading");
      return "none";
    }
    return queued <= 2 * limit ? "disco" : "none";
  }

  private isStalled(): boolean {
    return this.fullSince !== 0 && this.stream.writableLength > this.server.maxQueuedBytes &&
      this.server.now() - this.fullSince > this.server.stallTimeoutMs;
  }

  /** Queues a forwarded frame; the caller checked room() first. */
  writePacket(frame: Uint8Array): void {
    this.cork();
    this.stream.write(frame);
  }

  writeControl(frame: Uint8Array): void {
    if (this.state === "closed" || this.stream.destroyed || this.stream.writableEnded) return;
    this.cork();
    this.stream.write(frame);
  }

  /** Batches the writes of one turn of the event loop into one socket write. */
  private cork(): void {
    if (this.corked) return;
    this.corked = true;
    this.stream.cork();
    queueMicrotask(this.uncork);
  }

  private readonly uncork = () => {
    this.corked = false;
    this.stream.uncork();
  };

  allowPeerGoneNotHere(): boolean {
    const now = this.server.now();
    this.peerGoneTokens = Math.min(3, this.peerGoneTokens + (now - this.peerGoneRefilledAt) / 1000);
    this.peerGoneRefilledAt = now;
    if (this.peerGoneTokens < 1) return false;
    this.peerGoneTokens -= 1;
    return true;
  }

  // ---- closing ------------------------------------------------------------------------

  /** Half-close: flush what is queued, then close. */
  end(): void {
    if (this.state === "closed") return;
    this.stopTimers();
    if (this.corked) this.uncork();
    this.stream.end();
    // Some Duplex implementations never emit 'close' after end(); make sure it happens.
    this.stream.once("finish", () => this.stream.destroy());
  }

  destroy(reason?: string): void {
    if (this.state === "closed") return;
    if (reason) {
      this.log.info("derp: closing connection", {
        reason,
        remote: this.remoteAddress,
        ...(this.keyShort ? { node: this.keyShort } : {}),
      });
      if (this.state !== "active") this.server.noteHandshakeFailure(false);
    }
    this.stream.destroy();
    this.cleanup();
  }

  private stopTimers(): void {
    clearTimeout(this.handshakeTimer);
    clearInterval(this.keepAliveTimer);
    this.handshakeTimer = undefined;
    this.keepAliveTimer = undefined;
  }

  private cleanup(): void {
    if (this.state === "closed") return;
    const wasActive = this.state === "active";
    this.state = "closed";
    this.stopTimers();
    this.held = [];
    if (wasActive) this.log.debug("derp: client disconnected", { node: this.keyShort });
    this.server.unregister(this);
    this.resolveClosed();
  }
}
