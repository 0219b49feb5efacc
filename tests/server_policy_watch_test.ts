import assert from "node:assert/strict";
import { PolicyManager } from "../lib/policy_manager/manager.ts";
import { parseConfigText } from "../lib/config/load.ts";
import { silentLogger } from "../lib/log/log.ts";
import { openMemoryState } from "./helpers/memory_state.ts";

const policy = (port: number) =>
  `{ "acls": [{ "action": "accept", "src": ["*"], "dst": ["*:${port}"] }] }\n`;

/** Polls until the manager has `text` in force (file events arrive asynchronously). */
async function waitForPolicy(manager: PolicyManager, text: string): Promise<void> {
  const deadline = Date.now() + 10_000;
  while ((await manager.get()).policy !== text) {
    if (Date.now() > deadline) {
      assert.equal((await manager.get()).policy, text, "the file change was not picked up");
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

Deno.test("policy manager: the file watch follows a file replaced by rename (atomic save)", async () => {
  const dir = await Deno.makeTempDir();
  const path = `${dir}/policy.hujson`;
  await Deno.writeTextFile(path, policy(80));
  const config = parseConfigText(`policy:\n  mode: file\n  path: "${path}"\n`).config;
  const { store, state } = await openMemoryState({ config });
  const manager = await PolicyManager.open({ config, store, state, log: silentLogger() });
  try {
    manager.attach({ setPolicy: () => {} });
    await Deno.writeTextFile(path, policy(81));
    await waitForPolicy(manager, policy(81));
    // Twice replaced the way editors and config tools save, then edited in place.
    for (const port of [82, 83]) {
      await Deno.writeTextFile(`${dir}/policy.tmp`, policy(port));
      await Deno.rename(`${dir}/policy.tmp`, path);
      await waitForPolicy(manager, policy(port));
    }
    await Deno.writeTextFile(path, policy(84));
    await waitForPolicy(manager, policy(84));
  } finally {
    manager.close();
    await store.close();
    await Deno.remove(dir, { recursive: true });
  }
});
