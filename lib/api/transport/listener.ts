/**
 * What the API listeners share: the request handler type that connectNodeAdapter produces, the
 * listener handle they return, and the bookkeeping that lets close() end open connections (HTTP/2
 * clients keep theirs open indefinitely, so server.close() alone would never finish).
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Http2ServerRequest, Http2ServerResponse } from "node:http2";
import type { Server } from "node:net";
import type { Duplex } from "node:stream";

/** A handler for both node:http and node:http2 compat requests (connectNodeAdapter's shape). */
export type ApiRequestHandler = (
  req: IncomingMessage | Http2ServerRequest,
  res: ServerResponse | Http2ServerResponse,
) => void;

/** A running API listener. */
export interface ApiListener {
  /** "unix:<path>" or "<host>:<port>", for logs. */
  readonly address: string;
  /** The bound TCP port (useful after listening on port 0); undefined for unix sockets. */
  readonly port: number | undefined;
  /** Stops accepting, drops open connections and (unix) removes the socket file. */
  close(): Promise<void>;
}

/** Reports a connection-level failure (bad preface, TLS handshake, protocol error). */
export type ConnectionErrorHandler = (error: Error) => void;

/** Remembers open connections so that close() can end them. */
export class ConnectionSet {
  #open = new Set<Duplex>();

  add(connection: Duplex): void {
    this.#open.add(connection);
    connection.once("close", () => this.#open.delete(connection));
  }

  get size(): number {
    return this.#open.size;
  }

  destroyAll(): void {
    for (const connection of this.#open) connection.destroy();
    this.#open.clear();
  }
}

/** Closes `server` after destroying its connections; resolves once it stopped listening. */
export function closeServer(server: Server, connections: ConnectionSet): Promise<void> {
  return new Promise((resolve) => {
    if (!server.listening) {
      connections.destroyAll();
      return resolve();
    }
    server.close(() => resolve());
    connections.destroyAll();
  });
}

/** Waits for `server.listen(...)` to bind, turning a bind failure into a rejection. */
export function awaitListening(server: Server): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (error: Error) => {
      server.off("listening", onListening);
      reject(error);
    };
    const onListening = () => {
      server.off("error", onError);
      resolve();
    };
    server.once("error", onError);
    server.once("listening", onListening);
  });
}
