import assert from "node:assert/strict";
import { KeyFileError, loadOrCreatePrivateKey } from "../lib/auth/keyfile.ts";

Deno.test("keyfile: created once with mode 0600, then read back unchanged", async () => {
  const dir = await Deno.makeTempDir();
  const path = `${dir}/sub/noise_private.key`;
  const first = await loadOrCreatePrivateKey(path);
  assert.equal(first.length, 32);
  assert.equal((await Deno.stat(path)).mode! & 0o777, 0o600);
  assert.match(await Deno.readTextFile(path), /^privkey:[0-9a-f]{64}\n$/);
  assert.deepEqual(await loadOrCreatePrivateKey(path), first);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("keyfile: a corrupt file is refused, not replaced", async () => {
  const dir = await Deno.makeTempDir();
  const path = `${dir}/k`;
  await Deno.writeTextFile(path, "privkey:xyz\n");
  await assert.rejects(loadOrCreatePrivateKey(path), KeyFileError);
  assert.equal(await Deno.readTextFile(path), "privkey:xyz\n");
  await Deno.remove(dir, { recursive: true });
});
