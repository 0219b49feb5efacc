// gen/ must be exactly what scripts/gen.ts produces from proto/ today: regenerate into a temp
// folder and compare every file byte for byte, in both directions.
import assert from "node:assert/strict";
import { join, relative } from "node:path";
import { generate, REPO_ROOT } from "../scripts/gen.ts";
import { file_headscale_v1_headscale, HeadscaleService } from "../gen/headscale/v1/headscale_pb.ts";
import { http } from "../gen/google/api/annotations_pb.ts";
import { getOption, hasOption } from "@bufbuild/protobuf";

async function listFiles(root: string): Promise<string[]> {
  const found: string[] = [];
  async function walk(dir: string): Promise<void> {
    for await (const entry of Deno.readDir(dir)) {
      const path = join(dir, entry.name);
      if (entry.isDirectory) await walk(path);
      else found.push(relative(root, path));
    }
  }
  await walk(root);
  return found.sort();
}

Deno.test("gen/ is up to date with proto/ (run `deno task gen` if this fails)", async () => {
  const tempBase = await Deno.makeTempDir({ prefix: "headscale-gen-" });
  try {
    await generate({ outBase: tempBase });
    const committedRoot = join(REPO_ROOT, "gen");
    const freshRoot = join(tempBase, "gen");
    const committed = await listFiles(committedRoot);
    const fresh = await listFiles(freshRoot);
    assert.ok(fresh.length > 0, "the generator wrote no files");
    assert.deepEqual(committed, fresh, "gen/ has missing or extra files");
    for (const file of fresh) {
      const [a, b] = await Promise.all([
        Deno.readFile(join(committedRoot, file)),
        Deno.readFile(join(freshRoot, file)),
      ]);
      assert.ok(
        a.length === b.length && a.every((byte, i) => byte === b[i]),
        `gen/${file} is stale`,
      );
    }
  } finally {
    await Deno.remove(tempBase, { recursive: true });
  }
});

Deno.test("generated service carries headscale's RPCs and REST annotations", () => {
  assert.equal(HeadscaleService.typeName, "headscale.v1.HeadscaleService");
  assert.equal(file_headscale_v1_headscale.proto.package, "headscale.v1");
  assert.equal(HeadscaleService.methods.length, 34); // 29 of headscale v0.29, MoveNode, 4 for the admin UI
  const listUsers = HeadscaleService.method.listUsers;
  assert.equal(listUsers.name, "ListUsers");
  assert.ok(hasOption(listUsers, http));
  const listRule = getOption(listUsers, http);
  assert.equal(listRule.pattern.case, "get");
  assert.equal(listRule.pattern.value, "/api/v1/user");
  const renameRule = getOption(HeadscaleService.method.renameNode, http);
  assert.deepEqual(renameRule.pattern, {
    case: "post",
    value: "/api/v1/node/{node_id}/rename/{new_name}",
  });
  const setPolicyRule = getOption(HeadscaleService.method.setPolicy, http);
  assert.equal(setPolicyRule.pattern.case, "put");
  assert.equal(setPolicyRule.body, "*");
});
