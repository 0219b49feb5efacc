/** Locating (and building on first use) the official Tailscale binaries via the install script. */
import { fileURLToPath } from "node:url";
import { runChecked } from "./command.ts";

/** The tailscale + tailscaled pair of one client version. */
export interface TailscaleBinaries {
  /** e.g. `v1.102.5`. */
  version: string;
  dir: string;
  tailscaled: string;
  tailscale: string;
}

/** `latest` and `oldest` are the versions pinned in scripts/install_tailscale.sh. */
export type TailscaleVersion = "latest" | "oldest" | `v${number}.${number}.${number}`;

const INSTALL_SCRIPT = fileURLToPath(
  new URL("../../scripts/install_tailscale.sh", import.meta.url),
);

/**
 * Runs scripts/install_tailscale.sh for `version`: instant when the binaries are already built,
 * a Go build (minutes on a cold cache) otherwise.
 */
export async function ensureTailscale(
  version: TailscaleVersion = "latest",
): Promise<TailscaleBinaries> {
  const out = await runChecked(["bash", INSTALL_SCRIPT, version], { timeoutMs: 30 * 60_000 });
  const last = out.trim().split("\n").at(-1) ?? "";
  const match = /^(v\S+) (.+)$/.exec(last);
  if (!match) throw new Error(`install_tailscale.sh printed no "<version> <dir>" line: ${out}`);
  const [, resolved, dir] = match;
  return {
    version: resolved,
    dir,
    tailscaled: `${dir}/tailscaled`,
    tailscale: `${dir}/tailscale`,
  };
}
