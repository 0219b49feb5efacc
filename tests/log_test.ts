import assert from "node:assert/strict";
import { createLogger } from "../lib/log/log.ts";

function capture(level: "debug" | "info" = "info", format: "text" | "json" = "text") {
  const lines: string[] = [];
  const log = createLogger({
    level,
    format,
    write: (l) => lines.push(l),
    now: () => new Date("2026-01-02T03:04:05.000Z"),
  });
  return { log, lines };
}

Deno.test("log: a child adds its fields to every line, and the parent keeps its own", () => {
  const { log, lines } = capture();
  const child = log.child({ node: 7 }).child({ machine: "mkey:ab" });
  child.info("map stream opened", { peers: 3 });
  log.warn("plain");
  assert.deepEqual(lines, [
    "2026-01-02T03:04:05.000Z INFO  map stream opened node=7 machine=mkey:ab peers=3",
    "2026-01-02T03:04:05.000Z WARN  plain",
  ]);
});

Deno.test("log: lines below the level are dropped, in children too", () => {
  const { log, lines } = capture("info");
  const child = log.child({ a: 1 });
  child.debug("hidden");
  log.trace("hidden");
  assert.deepEqual(lines, []);
  assert.deepEqual([child.enabled("debug"), child.enabled("info")], [false, true]);
});

Deno.test("log: JSON lines carry the fields and an error's message", () => {
  const { log, lines } = capture("debug", "json");
  log.child({ user: "alice" }).error("failed", { error: new Error("disk full") });
  assert.deepEqual(JSON.parse(lines[0]), {
    time: "2026-01-02T03:04:05.000Z",
    level: "error",
    msg: "failed",
    user: "alice",
    error: "disk full",
  });
});
