/**
 * `deno task fanout-floor [N] [BYTES]`: what one write to each of N map streams costs on this
 * machine, layer by layer: the socket handle's own write of a sealed record, the same through
 * SocketWriter, sealing alone, NoiseConn.writePlain (seal + write), and a map stream's HTTP/2
 * response write (a DATA frame of a zstd map message, sealed and written: what the notifier
 * pays per session, less its own loop and MapStream's checks). A change fans out as one such
 * write per session, so N times these numbers is the floor of a flush (docs/scale.md); the last
 * line gives the floors the batched write sets for a lone change and for churn at N sessions.
 *
 * N TCP connections over loopback, like the scale benchmark: this process (the sender) on core
 * SERVER_CPU (default 1), a receiver that reads and discards on GEN_CPU (default 0). On loopback
 * the receiving side's TCP work runs on the sender's core, inside its write.
 */
import net from "node:net";
import { NoiseConn } from "../lib/noise/conn.ts";
import { RecordOpener, RecordSealer } from "../lib/noise/records.ts";
import { ChaChaSealEngine } from "../lib/noise/chacha_wasm.ts";
import { SocketWriter } from "../lib/net/socket_writer.ts";
import { WriteBatch } from "../lib/net/write_batch.ts";
import { type H2Response, H2ServerConnection } from "../lib/h2/server.ts";
import { Flag, frame, FrameType, PREFACE, settingsFrame } from "../lib/h2/frames.ts";
import { transportOf } from "../lib/control/noise_server.ts";
import { SharedMessage } from "../lib/mapper/framing.ts";
import { CPU_BUDGET, flushPause } from "../lib/mapper/notifier.ts";

const ROUNDS = 20;

/** The receiver: N connections to `port`, everything read is dropped. */
async function receive(port: number, n: number): Promise<void> {
  let open = 0;
  for (let i = 0; i < n; i++) {
    const c = net.connect(port, "127.0.0.1");
    c.on("connect", () => {
      if (++open === n) console.error(`fanout-floor: ${n} connections open`);
    });
    c.on("data", () => {});
    c.on("error", () => {});
    // Not all at once: the listen backlog would drop some.
    if (i % 200 === 199) await new Promise((r) => setTimeout(r, 30));
  }
  setInterval(() => {}, 60_000);
}

/** A client's preface, empty SETTINGS, and the HEADERS of a POST on stream 1. */
function clientRequest(): Uint8Array {
  const literal = (name: string, value: string) => {
    const n = new TextEncoder().encode(name);
    const v = new TextEncoder().encode(value);
    return [0, n.length, ...n, v.length, ...v];
  };
  const block = new Uint8Array([
    ...literal(":method", "POST"),
    ...literal(":scheme", "http"),
    ...literal(":authority", "bench"),
    ...literal(":path", "/machine/map"),
  ]);
  return Buffer.concat([
    PREFACE,
    settingsFrame([]),
    frame(FrameType.HEADERS, Flag.END_HEADERS, 1, block),
  ]);
}

/** A map message whose zstd frame is about `bytes` long (random text barely compresses). */
function mapMessage(bytes: number): SharedMessage {
  const alphabet = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
  const random = crypto.getRandomValues(new Uint8Array(Math.max(0, bytes - 40)));
  const text = Array.from(random, (b) => alphabet[b % alphabet.length]).join("");
  return new SharedMessage(JSON.stringify({ PeersChangedPatch: [{ NodeID: 1, Text: text }] }));
}

function pin(pid: number, core: string): void {
  const r = new Deno.Command("taskset", { args: ["-a", "-p", "-c", core, String(pid)] })
    .outputSync();
  if (!r.success) console.error(`fanout-floor: could not pin ${pid} to core ${core}`);
}

interface Handle {
  writeBuffer(req: { oncomplete(status: number): void }, data: Uint8Array): number;
}

async function send(n: number, size: number): Promise<void> {
  pin(Deno.pid, Deno.env.get("SERVER_CPU") ?? "1");
  const sockets: net.Socket[] = [];
  const server = net.createServer((s) => sockets.push(s));
  await new Promise<void>((r) => server.listen({ port: 0, host: "127.0.0.1", backlog: 4096 }, r));
  const port = (server.address() as net.AddressInfo).port;
  const receiver = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-net",
      "--allow-run",
      import.meta.filename!,
      "--receive",
      `${port}`,
      `${n}`,
    ],
    stdout: "inherit",
    stderr: "inherit",
  }).spawn();
  pin(receiver.pid, Deno.env.get("GEN_CPU") ?? "0");
  try {
    const deadline = Date.now() + 120_000;
    while (sockets.length < n) {
      if (Date.now() > deadline) throw new Error(`only ${sockets.length} of ${n} connected`);
      await new Promise((r) => setTimeout(r, 100));
    }
    const engine = new ChaChaSealEngine();
    const batch = new WriteBatch();
    const key = crypto.getRandomValues(new Uint8Array(32));
    const sealers = sockets.map(() => new RecordSealer(key, engine));
    const writers = sockets.map((s) => new SocketWriter(s));
    const handles = sockets.map((s) => (s as unknown as { _handle: Handle })._handle);
    // The layers share the sockets (and their raw writes bypass the SocketWriters): the pause
    // before each round lets the receiver drain them, so every write finds an empty queue.
    const conns = sockets.map((socket, i) =>
      new NoiseConn({
        socket,
        sealer: sealers[i],
        opener: new RecordOpener(key, engine),
        peerPublicKey: new Uint8Array(32),
        protocolVersion: 1,
        handshakeHash: new Uint8Array(32),
        writeBatch: batch,
      })
    );
    // Each NoiseConn carries an HTTP/2 connection with one open response, as a map stream's.
    const responses: H2Response[] = [];
    const request = clientRequest();
    for (const conn of conns) {
      const transport = transportOf(conn);
      const h2 = new H2ServerConnection(transport.h2, (_req, res) => {
        res.writeHead(200);
        responses.push(res);
      });
      transport.attach(h2);
      h2.receive(request);
    }
    if (responses.length !== n) throw new Error(`${responses.length} of ${n} streams opened`);
    const message = mapMessage(size);
    const pieces = message.framePieces(true);
    const header = new Uint8Array(9);
    const body = new Uint8Array(size).fill(0x5a);
    const record = sealers[0].sealPieces([header, body], size + 9);
    const req = { oncomplete() {} };

    const each = (write: (i: number) => void) => () => {
      for (let i = 0; i < n; i++) write(i);
    };
    const layers: [string, () => void][] = [
      ["handle.writeBuffer (sealed record)", each((i) => void handles[i].writeBuffer(req, record))],
      ["SocketWriter.write", each((i) => void writers[i].write(record))],
      [
        "RecordSealer.sealPieces (no write)",
        each((i) => {
          const out = sealers[i].sealPieces([header, body], size + 9, true);
          sealers[i].reuse(out);
        }),
      ],
      [
        "NoiseConn.writePlain (seal + write)",
        each((i) => conns[i].writePlain([header, body], size + 9)),
      ],
      ["H2Response.write (map message)", each((i) => responses[i].write(pieces))],
      [
        "H2Response.write, writes batched",
        () => batch.run(each((i) => responses[i].write(pieces))),
      ],
    ];
    console.log(
      `${n} connections, ${size}-byte messages (${record.length} bytes sealed; ` +
        `the map message is ${message.frame(true).length} bytes framed)`,
    );
    console.log("layer                                    µs per write: median (min) of " + ROUNDS);
    // Rounds take the layers in turn, so the machine's drift touches every layer alike.
    const perWrite = layers.map(() => [] as number[]);
    for (let round = 0; round < ROUNDS; round++) {
      for (let l = 0; l < layers.length; l++) {
        // A pause like the one between flushes, for the receiver to read everything.
        await new Promise((r) => setTimeout(r, 150));
        const t = performance.now();
        layers[l][1]();
        perWrite[l].push((performance.now() - t) * 1000 / n);
      }
    }
    const sorted = perWrite.map((w) => [...w].sort((a, z) => a - z));
    const median = (l: number) => sorted[l][Math.floor(ROUNDS / 2)];
    for (let l = 0; l < layers.length; l++) {
      console.log(
        `${layers[l][0].padEnd(40)} ${median(l).toFixed(2)} (${sorted[l][0].toFixed(2)})`,
      );
    }
    printFloors(n, median(layers.length - 1));
  } finally {
    receiver.kill();
    await receiver.status;
    for (const s of sockets) s.destroy();
    server.close();
  }
}

/**
 * What a flush to n sessions at this cost a session means for the scale targets (docs/scale.md):
 * a lone change reaches its last receiver no sooner than one flush, and in churn a change waits
 * half a flush interval (the flush and the notifier's pause after it, with no other work) for the
 * next flush and then the whole flush: p50 ≥ F + F / (2 · CPU_BUDGET).
 */
function printFloors(n: number, usPerSession: number): void {
  const flush = n * usPerSession / 1000;
  const churn = flush + (flush + flushPause(flush, 0, Infinity)) / 2;
  console.log(
    `floors at ${n} sessions: a lone change ${flush.toFixed(0)} ms (target 100 at 10,000), ` +
      `churn p50 ${churn.toFixed(0)} ms (target 200; flushes within ${
        CPU_BUDGET * 100
      } % of the core)`,
  );
}

if (Deno.args[0] === "--receive") {
  await receive(Number(Deno.args[1]), Number(Deno.args[2]));
} else {
  const n = Number(Deno.args[0] ?? 10_000);
  const size = Number(Deno.args[1] ?? 600);
  if (!(n > 0) || !(size >= 0)) {
    console.error("usage: deno task fanout-floor [N=10000] [BYTES=600]");
    Deno.exit(2);
  }
  await send(n, size);
  Deno.exit(0);
}
