/**
 * An AccessDiff (lib/policy/access_diff.ts) in words for the Policy page: grouped by source
 * node ("alice-laptop: gains tcp:22 on db-1"), SSH logins separately, the list capped with a
 * count of what was left out. Plain data, so the page and the editor's script render the same.
 */
import type { AccessDiff } from "../policy/access_diff.ts";

export interface PreviewGroup {
  source: string;
  lines: { kind: "gain" | "loss"; text: string }[];
}

export interface PolicyPreview {
  /** One sentence: how many sources gain and lose, and whether SSH changes. */
  summary: string;
  access: PreviewGroup[];
  ssh: PreviewGroup[];
  /** Lines left out beyond the cap. */
  omitted: number;
}

export function summarizeAccessDiff(
  diff: AccessDiff,
  nameOf: (nodeId: number) => string,
  cap = 60,
): PolicyPreview {
  const name = (src: number | string) => typeof src === "number" ? nameOf(src) : src;
  const access = new Map<string, PreviewGroup["lines"]>();
  const gainers = new Set<string>(), losers = new Set<string>();
  const add = (
    groups: Map<string, PreviewGroup["lines"]>,
    src: string,
    line: PreviewGroup["lines"][0],
  ) => {
    let lines = groups.get(src);
    if (!lines) groups.set(src, lines = []);
    lines.push(line);
  };
  for (const c of diff.changes) {
    const src = name(c.src);
    const where = c.via ? `${c.via} via ${nameOf(c.dst)}` : nameOf(c.dst);
    if (c.gained.length > 0) {
      gainers.add(src);
      add(access, src, { kind: "gain", text: `gains ${c.gained.join(", ")} on ${where}` });
    }
    if (c.lost.length > 0) {
      losers.add(src);
      add(access, src, { kind: "loss", text: `loses ${c.lost.join(", ")} on ${where}` });
    }
  }
  const ssh = new Map<string, PreviewGroup["lines"]>();
  for (const c of diff.ssh) {
    const src = name(c.src);
    const dst = nameOf(c.dst);
    if (c.gained.length > 0) {
      add(ssh, src, { kind: "gain", text: `may log in to ${dst} as ${c.gained.join(", ")}` });
    }
    if (c.lost.length > 0) {
      add(ssh, src, {
        kind: "loss",
        text: `may no longer log in to ${dst} as ${c.lost.join(", ")}`,
      });
    }
  }
  let budget = cap, omitted = 0;
  const capped = (groups: Map<string, PreviewGroup["lines"]>): PreviewGroup[] => {
    const out: PreviewGroup[] = [];
    for (const [source, lines] of [...groups].sort(([a], [b]) => a.localeCompare(b))) {
      lines.sort((a, b) => a.kind.localeCompare(b.kind) || a.text.localeCompare(b.text));
      const kept = lines.slice(0, Math.max(0, budget));
      omitted += lines.length - kept.length;
      budget -= kept.length;
      if (kept.length > 0) out.push({ source, lines: kept });
    }
    return out;
  };
  const accessGroups = capped(access);
  const sshGroups = capped(ssh);
  const partial = diff.truncated
    ? ` The change is large: the list below is a part of it, and the numbers are at least these.`
    : "";
  return {
    summary: sentence(gainers.size, losers.size, diff.sshChanged) + partial,
    access: accessGroups,
    ssh: sshGroups,
    omitted,
  };
}

function sentence(gain: number, lose: number, sshNodes: number): string {
  const nodes = (n: number) => `${n} node${n === 1 ? "" : "s"}`;
  const parts: string[] = [];
  if (gain === 0 && lose === 0) parts.push("No node gains or loses network access");
  else {
    if (gain > 0) parts.push(`${nodes(gain)} gain${gain === 1 ? "s" : ""} access`);
    if (lose > 0) parts.push(`${nodes(lose)} lose${lose === 1 ? "s" : ""} access`);
  }
  parts.push(
    sshNodes === 0 ? "SSH rules do not change" : `SSH rules change on ${nodes(sshNodes)}`,
  );
  return parts.join("; ") + ".";
}
