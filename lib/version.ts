/**
 * Version information in headscale's shape (`GET /version`, `version -o json`): Headplane and
 * other tools ask for it first and give up on a server that does not answer.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import project from "../deno.json" with { type: "json" };

export interface VersionInfo {
  version: string;
  commit: string;
  buildTime: string;
  /** headscale reports its Go toolchain here; ours is the Deno runtime. */
  go: { version: string; os: string; arch: string };
  dirty: boolean;
}

export function versionInfo(): VersionInfo {
  return {
    version: project.version,
    commit: "unknown",
    buildTime: "unknown",
    go: { version: `deno${Deno.version.deno}`, os: Deno.build.os, arch: Deno.build.arch },
    dirty: false,
  };
}

/** `headscale version`'s human-readable form. */
export function formatVersion(v: VersionInfo): string {
  return [
    `headscale-deno version ${v.version}`,
    `commit: ${v.commit}`,
    `build time: ${v.buildTime}`,
    `built with: ${v.go.version} ${v.go.os}/${v.go.arch}`,
  ].join("\n");
}

export function versionHandler(): (req: IncomingMessage, res: ServerResponse) => void {
  const body = JSON.stringify(versionInfo()) + "\n";
  return (_req, res) => {
    res.writeHead(200, { "content-type": "application/json" });
    res.end(body);
  };
}
