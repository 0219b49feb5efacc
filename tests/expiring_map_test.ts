import assert from "node:assert/strict";
import { ExpiringMap } from "../lib/auth_requests/expiring_map.ts";

interface Item {
  name: string;
  createdAt: number;
}

function setup(maxEntries = 3) {
  let now = 1_000;
  const dropped: string[] = [];
  const map = new ExpiringMap<Item>({
    ttlMs: 100,
    maxEntries,
    now: () => now,
    onDrop: (key) => dropped.push(key),
  });
  const add = (key: string) => map.set(key, { name: key, createdAt: now });
  return { map, dropped, add, advance: (ms: number) => (now += ms), now: () => now };
}

Deno.test("expiring map: entries expire after the ttl and are reported once", () => {
  const { map, dropped, add, advance } = setup();
  add("a");
  advance(60);
  add("b");
  advance(39);
  assert.deepEqual(map.entries().map(([k]) => k), ["a", "b"]);
  advance(1); // a is 100 ms old
  assert.equal(map.get("a"), undefined);
  assert.equal(map.has("b"), true);
  assert.deepEqual(dropped, ["a"]);
  advance(60);
  assert.equal(map.size, 0);
  assert.deepEqual(dropped, ["a", "b"]);
});

Deno.test("expiring map: a full map pushes out its oldest entry; replacing moves a key last", () => {
  const { map, dropped, add } = setup(3);
  add("a");
  add("b");
  add("c");
  add("a"); // replaced: no room needed, now the newest
  assert.deepEqual(map.entries().map(([k]) => k), ["b", "c", "a"]);
  add("d");
  assert.deepEqual(map.entries().map(([k]) => k), ["c", "a", "d"]);
  assert.deepEqual(dropped, ["b"]);
});

Deno.test("expiring map: delete and clear report nothing; an entry put back keeps its age", () => {
  const { map, dropped, add, advance, now } = setup();
  add("old");
  const old = map.get("old")!;
  advance(50);
  add("new");
  assert.equal(map.delete("old"), true);
  map.set("old", old); // put back behind a younger entry
  advance(50);
  assert.equal(map.get("old"), undefined, "expires on its own createdAt, not when put back");
  assert.equal(map.get("new")?.createdAt, now() - 50);
  map.clear();
  assert.equal(map.size, 0);
  assert.deepEqual(dropped, ["old"]);
});
