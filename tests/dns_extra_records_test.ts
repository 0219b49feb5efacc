import assert from "node:assert/strict";
import { ExtraRecordsWatcher, parseExtraRecords } from "../lib/dns/extra_records.ts";
import { silentLogger } from "../lib/log/log.ts";

Deno.test("dns extra records: the file format and its errors", () => {
  assert.deepEqual(parseExtraRecords('[{"name":"a.example","type":"A","value":"100.64.0.1"}]'), [
    { name: "a.example", type: "A", value: "100.64.0.1" },
  ]);
  assert.deepEqual(parseExtraRecords('[{"name":"b.example","value":"fd7a::1"}]'), [
    { name: "b.example", type: "", value: "fd7a::1" },
  ]);
  assert.throws(() => parseExtraRecords("{}"), /JSON array/);
  assert.throws(() => parseExtraRecords('[{"name":"x"}]'), /record 0 needs a name and a value/);
  assert.throws(() => parseExtraRecords("[1,"), SyntaxError);
});

Deno.test("dns extra records: changes are picked up, a broken file keeps the last good records", async () => {
  const dir = await Deno.makeTempDir();
  const path = `${dir}/records.json`;
  let changes = 0;
  const w = new ExtraRecordsWatcher({ path, log: silentLogger(), onChange: () => changes++ });
  try {
    assert.equal(await w.check(), false, "a missing file is not fatal");
    assert.deepEqual(w.current(), []);
    await Deno.writeTextFile(path, '[{"name":"a.example","type":"A","value":"100.64.0.1"}]');
    assert.equal(await w.check(), true);
    assert.equal(w.current().length, 1);
    assert.equal(changes, 1);
    assert.equal(await w.check(), false, "unchanged file");
    await Deno.writeTextFile(path, "[not json");
    assert.equal(await w.check(), false);
    assert.equal(w.current().length, 1);
    await Deno.writeTextFile(
      path,
      '[{"name":"a.example","type":"A","value":"100.64.0.1"},{"name":"b.example","type":"AAAA","value":"fd7a::2"}]',
    );
    assert.equal(await w.check(), true);
    assert.equal(w.current().length, 2);
    assert.equal(changes, 2);
  } finally {
    w.close();
    await Deno.remove(dir, { recursive: true });
  }
});
