/**
 * What a map stream holds must not grow with the tailnet. Deno's node:http2 keeps, per stream, a
 * buffer as large as the largest write it was given; a long poll lives as long as the node is
 * online, so a full map written in one go (MBs at 10,000 nodes) would stay allocated per session.
 * These tests pin the remedy through the real control path: the stream is given one piece at a
 * time, the same bound at 30 peers as at 1,500.
 */
import assert from "node:assert/strict";
import { Http2ServerResponse } from "node:http2";
import { WRITE_PIECE_BYTES } from "../lib/control/map_session.ts";
import { randomKey, startTestControl } from "./helpers/control.ts";
import { registerTestNode } from "./helpers/memory_state.ts";

interface WriteLog {
  /** Bytes written to an HTTP/2 response whose write callback had not run yet, at most. */
  maxOutstanding: number;
  total: number;
}

/**
 * Records what every Http2ServerResponse in this process is given (the real write still runs).
 * Returns the log and a function that undoes the recording.
 */
function recordResponseWrites(): { log: WriteLog; restore: () => void } {
  const proto = Http2ServerResponse.prototype as unknown as {
    write: (chunk: unknown, ...rest: unknown[]) => boolean;
  };
  const original = proto.write;
  const log: WriteLog = { maxOutstanding: 0, total: 0 };
  const outstanding = new WeakMap<object, number>();
  proto.write = function (this: object, chunk: unknown, ...rest: unknown[]) {
    const size = chunk instanceof Uint8Array ? chunk.byteLength : String(chunk).length;
    const now = (outstanding.get(this) ?? 0) + size;
    outstanding.set(this, now);
    log.maxOutstanding = Math.max(log.maxOutstanding, now);
    log.total += size;
    const cbIndex = rest.findIndex((r) => typeof r === "function");
    const done = () => outstanding.set(this, (outstanding.get(this) ?? size) - size);
    if (cbIndex >= 0) {
      const cb = rest[cbIndex] as (...a: unknown[]) => void;
      rest[cbIndex] = (...a: unknown[]) => {
        done();
        cb(...a);
      };
    } else {
      rest.push(done);
    }
    return original.call(this, chunk, ...rest);
  };
  return { log, restore: () => proto.write = original };
}

/** Opens one map stream in a tailnet of `nodes` nodes; returns what its response was given. */
async function fullMapWrites(nodes: number): Promise<WriteLog & { peers: number }> {
  const t = await startTestControl();
  const { log, restore } = recordResponseWrites();
  try {
    const user = await t.user("alice");
    const machineKey = randomKey("mkey:");
    const self = await registerTestNode(t.state, user.id, "self", { machineKey });
    for (let i = 1; i < nodes; i++) await registerTestNode(t.state, user.id, `node-${i}`);
    t.notifier.flush();
    const reader = t.connect(machineKey).map({
      Version: 130,
      NodeKey: self.nodeKey,
      Compress: "zstd",
      Stream: true,
      KeepAlive: true,
      Hostinfo: { Hostname: self.hostname, OS: "linux" },
    });
    const map = await reader.nextUpdate(20_000);
    reader.close();
    return { ...log, peers: map?.Peers?.length ?? -1 };
  } finally {
    restore();
    await t.close();
  }
}

Deno.test("map stream: the HTTP/2 stream is given one piece at a time, at 30 peers as at 1,500", async () => {
  const small = await fullMapWrites(31);
  const large = await fullMapWrites(1501);
  assert.equal(small.peers, 30);
  assert.equal(large.peers, 1500);
  // The large map spans many pieces, so this is a real test of the pacing.
  assert.ok(large.total > 4 * WRITE_PIECE_BYTES, `full map of ${large.total} bytes`);
  assert.ok(
    large.maxOutstanding <= WRITE_PIECE_BYTES,
    `${large.maxOutstanding} bytes outstanding at once`,
  );
  assert.ok(small.maxOutstanding <= WRITE_PIECE_BYTES);
});
