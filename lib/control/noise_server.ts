/**
 * HTTP/2 inside Noise: one HTTP/2 server connection (lib/h2) per Noise connection (it knows that
 * connection's machine key), routing by path. Every request is bound to the peer's machine key;
 * bodies are bounded; bad input gets a 4xx with the reason and never throws out of a handler.
 */
import type { Duplex } from "node:stream";
import {
  type H2Request,
  type H2Response,
  H2ServerConnection,
  type H2Transport,
} from "../h2/server.ts";
import { NoiseConn } from "../noise/conn.ts";
import type { Logger } from "../log/log.ts";
import type { State } from "../state/state.ts";
import { UnavailableError } from "../state/errors.ts";
import type { MapRequest, RegisterRequest } from "../tailcfg/types.ts";
import { HttpError, readJsonObject, sendJson, sendText } from "./http_util.ts";
import type { MapService } from "./map_session.ts";
import type { RegisterService } from "./register.ts";
import type { SshChecks } from "./ssh_check.ts";
import { usableKey } from "./sanitize.ts";
import { MIN_CAP_VERSION } from "../tailcfg/capver.ts";
import type { MachineKey } from "../tailcfg/keys.ts";

/** Far above any real capability version (145 in 2026), far below anything unsafe. */
const MAX_CAP_VERSION = 100_000;

export interface BodyLimits {
  register: number;
  map: number;
  other: number;
}

export const DEFAULT_BODY_LIMITS: BodyLimits = {
  register: 1 << 20,
  map: 4 << 20,
  other: 64 << 10,
};

export interface ControlHandlerDeps {
  state: Pick<State, "nodeByNodeKey">;
  register: RegisterService;
  maps: MapService;
  /** Tailscale SSH check mode (GET /machine/ssh/action/…); without it those answer 501. */
  sshChecks?: SshChecks;
  log: Logger;
  minCapVersion?: number;
  limits?: Partial<BodyLimits>;
  /** Concurrent streams per connection (Go's server allows 250; at least 100 needed). */
  maxConcurrentStreams?: number;
}

export type ControlHandler =
  & ((conn: Duplex, machineKey: MachineKey, capVersion: number) => void)
  & {
    /** Open Noise connections being served. */
    readonly connectionCount: number;
    /** Sends GOAWAY on every connection and waits (bounded) for them to close. */
    close(): Promise<void>;
  };

/** `/machine/ssh/action/<src node id>/to/<dst node id>` (ids are tailcfg.NodeID). */
const SSH_ACTION_PATH = /^\/machine\/ssh\/action\/(\d{1,15})\/to\/(\d{1,15})$/;

/** Optional endpoints: 200 with a fixed body, or 501 as headscale answers. */
const OPTIONAL_OK: Record<string, string> = {
  "/machine/update-health": "",
  "/machine/set-dns": "{}",
};

export function createControlHandler(deps: ControlHandlerDeps): ControlHandler {
  const minCap = deps.minCapVersion ?? MIN_CAP_VERSION;
  const limits = { ...DEFAULT_BODY_LIMITS, ...deps.limits };
  const sessions = new Set<H2ServerConnection>();
  let closing = false;

  const checkVersion = (body: Record<string, unknown>): number => {
    const v = body.Version;
    if (typeof v !== "number" || !Number.isInteger(v)) {
      throw new HttpError(400, "Version (capability version) is missing");
    }
    // It is forwarded to peers as Node.Cap (a Go int): keep it a small integer.
    if (v > MAX_CAP_VERSION) throw new HttpError(400, `Version ${v} is out of range`);
    if (v < minCap) {
      throw new HttpError(
        400,
        `unsupported client version: capability version ${v} is older than ${minCap} ` +
          `(Tailscale v1.80); please upgrade`,
      );
    }
    return v;
  };

  /** For endpoints that name a NodeKey: it must belong to this machine. */
  const checkNodeKeyBinding = (body: Record<string, unknown>, machineKey: MachineKey): void => {
    const nodeKey = usableKey(body.NodeKey, "nodekey:");
    if (!nodeKey) throw new HttpError(400, "NodeKey is missing or not a valid nodekey");
    const node = deps.state.nodeByNodeKey(nodeKey);
    if (!node || node.machineKey !== machineKey) throw new HttpError(404, "node not found");
  };

  async function route(
    req: H2Request,
    res: H2Response,
    machineKey: MachineKey,
    log: Logger,
  ): Promise<void> {
    const path = req.path.split("?")[0];
    const method = req.method;
    if (path === "/machine/register" || path === "/machine/map") {
      if (method !== "POST") throw new HttpError(405, "method not allowed; use POST");
      const isMap = path === "/machine/map";
      const body = await readJsonObject(req, isMap ? limits.map : limits.register);
      checkVersion(body);
      if (isMap) {
        deps.maps.handle(body as unknown as MapRequest, machineKey, res);
        return;
      }
      const reply = await deps.register.handle(
        body as unknown as RegisterRequest,
        machineKey,
        req.signal,
      );
      sendJson(res, 200, reply);
      return;
    }
    const sshAction = SSH_ACTION_PATH.exec(path);
    if (sshAction && deps.sshChecks) {
      if (method !== "GET") throw new HttpError(405, "method not allowed; use GET");
      const query = new URLSearchParams(req.path.split("?")[1] ?? "");
      const action = await deps.sshChecks.action(
        Number(sshAction[1]),
        Number(sshAction[2]),
        query.get("auth_id") || null,
        machineKey,
        req.signal,
      );
      sendJson(res, 200, action);
      return;
    }
    if (path in OPTIONAL_OK) {
      if (method !== "POST") throw new HttpError(405, "method not allowed; use POST");
      const body = await readJsonObject(req, limits.other);
      if (path === "/machine/set-dns") checkNodeKeyBinding(body, machineKey);
      res.writeHead(200, { "content-type": "application/json; charset=utf-8" });
      res.end(OPTIONAL_OK[path]);
      return;
    }
    if (path.startsWith("/machine/")) {
      log.debug("unimplemented control endpoint", { path, method });
      throw new HttpError(501, "not implemented");
    }
    throw new HttpError(404, "not found");
  }

  const handle = (conn: Duplex, machineKey: MachineKey, capVersion: number): void => {
    const log = deps.log.child({ machine: machineKey.slice(0, 13) });
    if (closing) {
      conn.destroy();
      return;
    }
    const transport = transportOf(conn);
    const session = new H2ServerConnection(transport.h2, (req, res) => {
      route(req, res, machineKey, log).catch((e) => {
        if (e instanceof HttpError) {
          if (e.status >= 500 && e.status !== 501) log.warn("control request failed", { error: e });
          else log.debug("control request refused", { status: e.status, reason: e.message });
          // Once answered, a refused upload still streaming in is reset by the connection.
          sendText(res, e.status, e.message);
        } else if (e instanceof UnavailableError) {
          // The client retries a 5xx; the admin learns from the log what to fix.
          log.warn("control request failed", { path: req.path, error: e.message });
          sendText(res, 503, e.message);
        } else {
          log.error("control request failed", { path: req.path, error: e });
          sendText(res, 500, "internal error");
        }
      });
    }, {
      maxConcurrentStreams: deps.maxConcurrentStreams ?? 250,
      maxBodyBytes: Math.max(limits.register, limits.map, limits.other),
    });
    sessions.add(session);
    session.onClose(() => sessions.delete(session));
    transport.attach(session);
    conn.on("error", (e) => log.debug("noise connection error", { error: e }));
    log.debug("serving control connection", { cap_version: capVersion });
  };

  Object.defineProperty(handle, "connectionCount", { get: () => sessions.size });
  return Object.assign(handle, {
    async close() {
      closing = true;
      for (const s of sessions) s.close();
      const deadline = Date.now() + 2_000;
      while (sessions.size > 0 && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 20));
      }
      for (const s of [...sessions]) s.destroy();
      sessions.clear();
    },
  }) as ControlHandler;
}

/**
 * A NoiseConn in direct mode as the HTTP/2 connection's transport. A class, not an object
 * literal: the literal with a getter and four closures took ~700 bytes per connection, and its
 * getter, read on every write of a fan-out, was a slow-mode property lookup.
 */
class NoiseTransport implements H2Transport {
  constructor(private readonly conn: NoiseConn) {}

  write(pieces: Uint8Array[], total: number): void {
    this.conn.writePlain(pieces, total);
  }

  get bufferedBytes(): number {
    return this.conn.socketBufferedBytes;
  }

  end(): void {
    this.conn.endSocket();
  }

  destroy(): void {
    this.conn.destroy();
  }
}

/**
 * The HTTP/2 connection's way out and in: a NoiseConn in direct mode (seal and write in the
 * caller's turn), or any Duplex (tests serve plain pipes). Exported for scripts/fanout_floor.ts.
 */
export function transportOf(conn: Duplex): {
  h2: H2Transport;
  attach(session: H2ServerConnection): void;
} {
  if (conn instanceof NoiseConn) {
    return {
      h2: new NoiseTransport(conn),
      attach(session) {
        conn.attachDirect((plain) => session.receive(plain));
        conn.onSocketDrain(() => session.drained());
        conn.on("close", () => session.transportClosed());
      },
    };
  }
  return {
    h2: {
      write(pieces, total) {
        if (conn.destroyed) return;
        conn.write(pieces.length === 1 ? pieces[0] : Buffer.concat(pieces, total));
      },
      get bufferedBytes() {
        return conn.writableLength;
      },
      end: () => conn.end(),
      destroy: () => conn.destroy(),
    },
    attach(session) {
      conn.on("data", (chunk: Uint8Array) => session.receive(chunk));
      conn.on("drain", () => session.drained());
      conn.on("close", () => session.transportClosed());
      conn.on("end", () => {
        session.transportClosed();
        conn.end();
      });
    },
  };
}
