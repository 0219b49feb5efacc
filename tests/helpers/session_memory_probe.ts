/**
 * Run with `--v8-flags=--expose-gc` (tests/session_memory_test.ts does): builds a tailnet of
 * NODES nodes in memory, opens SESSIONS map streams through the real control path (HTTP/2
 * over in-memory pipes, MapService, notifier), waits until each has its full map, and prints
 * the JS memory (heap + external) those sessions hold, per session, as JSON. The clients read
 * and drop what they receive, so what remains is what the two ends of a session keep.
 *
 *   deno run --allow-all --v8-flags=--expose-gc tests/helpers/session_memory_probe.ts NODES SESSIONS
 */
import { randomKey, startTestControl } from "./control.ts";
import { registerTestNode } from "./memory_state.ts";
import type { MachineKey, NodeKey } from "../../lib/tailcfg/keys.ts";

const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) throw new Error("run with --v8-flags=--expose-gc");

function used(): number {
  for (let i = 0; i < 4; i++) gc!();
  const m = Deno.memoryUsage();
  return m.heapUsed + m.external;
}

const settle = () => new Promise((r) => setTimeout(r, 50));

const nodes = Number(Deno.args[0] ?? 100);
const sessions = Number(Deno.args[1] ?? 20);
const t = await startTestControl();
const user = await t.user("probe");
const members: { id: number; machineKey: MachineKey; nodeKey: NodeKey }[] = [];
for (let i = 0; i < nodes; i++) {
  const machineKey = randomKey("mkey:");
  const n = await registerTestNode(t.state, user.id, `node-${i}`, { machineKey });
  members.push({ id: n.id, machineKey, nodeKey: n.nodeKey as NodeKey });
}
t.notifier.flush();
// Build the shared caches (peer JSON, compressed chunks) before the baseline.
t.mapper.fullMapMessages(members[members.length - 1].id);
await settle();
const before = used();

/** Opens a map stream and resolves once its first message arrived; later bytes are dropped. */
function openStream(m: (typeof members)[number]): Promise<number> {
  const client = t.connect(m.machineKey);
  const stream = client.session.request({ ":method": "POST", ":path": "/machine/map" });
  stream.end(JSON.stringify({
    Version: 130,
    NodeKey: m.nodeKey,
    Compress: "zstd",
    Stream: true,
    KeepAlive: true,
    Hostinfo: { Hostname: `node-${m.id}`, OS: "linux" },
  }));
  return new Promise((resolve, reject) => {
    let received = 0;
    let need = -1;
    let head = new Uint8Array(0);
    stream.on("data", (chunk: Uint8Array) => {
      received += chunk.byteLength;
      if (need < 0) {
        const joined = new Uint8Array(head.byteLength + chunk.byteLength);
        joined.set(head);
        joined.set(chunk, head.byteLength);
        head = joined.byteLength < 4 ? joined : new Uint8Array(0);
        if (joined.byteLength >= 4) {
          need = 4 + new DataView(joined.buffer, joined.byteOffset).getUint32(0, true);
        }
      }
      if (need >= 0 && received >= need) {
        need = Infinity;
        resolve(received);
      }
    });
    stream.on("error", reject);
    stream.on("end", () => reject(new Error("map stream ended")));
  });
}

let fullMapBytes = 0;
for (let i = 0; i < sessions; i++) fullMapBytes = await openStream(members[i]);
t.notifier.flush();
await settle();
const after = used();
console.log(JSON.stringify({
  nodes,
  sessions,
  fullMapBytes,
  perSessionBytes: Math.round((after - before) / sessions),
}));
await t.close();
Deno.exit(0);
