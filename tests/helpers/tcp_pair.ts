import { connect, createServer, type Server, type Socket } from "node:net";
import { once } from "node:events";

/** Two ends of a loopback TCP connection: `a` dialled, `b` accepted; `close` stops the listener. */
export async function tcpPair(): Promise<
  { a: Socket; b: Socket; server: Server; close: () => void }
> {
  const server = createServer();
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const port = (server.address() as { port: number }).port;
  const accepted = once(server, "connection");
  const a = connect(port, "127.0.0.1");
  const [[b]] = await Promise.all([accepted as Promise<[Socket]>, once(a, "connect")]);
  return { a, b, server, close: () => server.close() };
}
