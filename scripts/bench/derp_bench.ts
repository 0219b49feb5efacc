/**
 * DERP relay throughput: packets/s and MB/s from one of our clients to another through our
 * relay over loopback TCP. The sender keeps at most WINDOW packets in flight (as a congestion
 * controlled tunnel would; the relay drops rather than queues for a reader that falls behind).
 * Each iteration sends a batch, then waits for a ping round trip on both connections so
 * everything the relay accepted has been read; dropped packets are not counted. Per-size totals
 * are printed when the run ends.
 *
 *   deno bench --allow-net --allow-read --allow-env --allow-sys scripts/bench/derp_bench.ts
 */
import { DerpClient } from "../../lib/derp/client.ts";
import { startTestDerp } from "../../tests/helpers/derp.ts";

const BATCH = 2_000;
const WINDOW_BYTES = 512 << 10;
const SIZES = [100, 1_200, 16_384];

const derp = await startTestDerp();
let received = 0;
let wake: (() => void) | undefined;
const receiver = await DerpClient.connect({
  url: derp.url,
  onPacket: () => {
    received++;
    wake?.();
  },
});

/** Waits for the receiver to make progress (or a short while, in case packets were dropped). */
function progress(): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, 50);
    function done() {
      clearTimeout(timer);
      wake = undefined;
      resolve();
    }
    wake = done;
  });
}
const sender = await DerpClient.connect({ url: derp.url });
await sender.ping();
await receiver.ping();

const totals = new Map<number, { packets: number; ms: number }>();

async function sendBatch(size: number): Promise<void> {
  const packet = new Uint8Array(size).fill(0x5a);
  const window = Math.max(4, Math.floor(WINDOW_BYTES / size));
  received = 0;
  const started = performance.now();
  for (let i = 0; i < BATCH; i++) {
    while (i - received >= window) await progress();
    if (!sender.send(receiver.publicKey, packet)) await sender.drain();
  }
  await sender.ping(); // the relay has handled every SendPacket before this
  await receiver.ping(); // and the receiver has read every packet queued before the pong
  const t = totals.get(size) ?? { packets: 0, ms: 0 };
  t.packets += received;
  t.ms += performance.now() - started;
  totals.set(size, t);
}

for (const size of SIZES) {
  Deno.bench(`derp relay: ${BATCH} packets of ${size} bytes, client → relay → client`, {
    group: "derp",
  }, async () => {
    await sendBatch(size);
  });
}

globalThis.addEventListener("unload", () => {
  for (const [size, t] of totals) {
    const pps = t.packets / (t.ms / 1000);
    console.log(
      `derp relay ${String(size).padStart(6)} B: ${
        Math.round(pps).toLocaleString("en")
      } packets/s, ` +
        `${(pps * size / 1e6).toFixed(1)} MB/s (${t.packets.toLocaleString("en")} packets)`,
    );
  }
  const dropped = derp.server.stats().droppedQueueFull;
  if (dropped > 0) console.log(`derp relay: ${dropped} packets dropped for a full queue`);
});

// Let the process exit when the benchmarks are done.
for (const c of [sender, receiver]) {
  (c as unknown as { stream: { unref?: () => void } }).stream.unref?.();
}
derp.http.unref();
