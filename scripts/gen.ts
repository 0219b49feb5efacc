// Regenerates gen/ from proto/ with buf and protoc-gen-es, both fetched from the npm registry by
// the running deno (no node_modules, no global installs). `deno task gen` runs it; the template is
// buf.gen.yaml, whose protoc-gen-es command line says `deno`, so the running deno's directory goes
// first on PATH.
//
// Pinned versions: buf 1.74.0 is the newest release with every platform package in the registry
// (deno resolves all optional dependencies, so one missing platform breaks the install);
// protoc-gen-es must match @bufbuild/protobuf in deno.json (see buf.gen.yaml).

import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

export const BUF_PACKAGE = "npm:@bufbuild/buf@1.74.0/buf";

/** The repository root (the folder holding buf.yaml). */
export const REPO_ROOT = join(dirname(fileURLToPath(import.meta.url)), "..");

export interface GenerateOptions {
  /** Folder that receives `gen/`; the repository root by default. */
  outBase?: string;
  /** Repository root holding buf.yaml, buf.gen.yaml and proto/. */
  repoRoot?: string;
}

/** Runs `buf generate`, writing `<outBase>/gen/**`. Throws with buf's output if it fails. */
export async function generate(options: GenerateOptions = {}): Promise<void> {
  const repoRoot = options.repoRoot ?? REPO_ROOT;
  const denoPath = Deno.execPath();
  const args = [
    "run",
    "--quiet",
    "--no-config",
    "--no-lock",
    "--allow-all",
    BUF_PACKAGE,
    "generate",
    "--template",
    "buf.gen.yaml",
  ];
  if (options.outBase !== undefined) args.push("--output", options.outBase);
  const pathSeparator = Deno.build.os === "windows" ? ";" : ":";
  const searchPath = [dirname(denoPath), Deno.env.get("PATH") ?? ""].join(pathSeparator);
  const result = await new Deno.Command(denoPath, {
    args,
    cwd: repoRoot,
    env: { PATH: searchPath },
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (!result.success) {
    const decoder = new TextDecoder();
    throw new Error(
      `buf generate failed (exit ${result.code}):\n${decoder.decode(result.stderr)}${
        decoder.decode(result.stdout)
      }`,
    );
  }
}

if (import.meta.main) {
  try {
    await generate();
    console.log(`generated ${join(REPO_ROOT, "gen")}`);
  } catch (error) {
    console.error(error instanceof Error ? error.message : error);
    Deno.exit(1);
  }
}
