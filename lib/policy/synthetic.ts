/**
 * Deterministic synthetic tailnets and policies, for benchmarks and property tests: users,
 * groups, tags, tagged and untagged nodes with addresses, a few subnet routers and exit
 * nodes, and a policy of group/tag/user rules with autogroup:self, hosts and SSH.
 */

import type { PolicyNode, PolicyUser } from "./types.ts";

/** A small seeded PRNG (mulberry32): same seed, same tailnet. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export interface SyntheticSpec {
  nodes: number;
  users: number;
  groups: number;
  tags: number;
  rules: number;
  seed?: number;
}

export interface SyntheticTailnet {
  users: PolicyUser[];
  nodes: PolicyNode[];
  policy: string;
  tags: string[];
  /** A node that is not in `nodes` yet (for join benchmarks). */
  makeNode(id: number): PolicyNode;
}

export function nodeAddresses(i: number): { ipv4: string; ipv6: string } {
  // 100.64.0.0/10 has room for 4M hosts; skip .0 and .255 for readability.
  const host = i + 1;
  const b = 64 + Math.floor(host / 65536);
  const c = Math.floor(host / 256) % 256;
  const d = host % 256;
  return { ipv4: `100.${b}.${c}.${d}`, ipv6: `fd7a:115c:a1e0::${host.toString(16)}` };
}

export function syntheticTailnet(spec: SyntheticSpec): SyntheticTailnet {
  const r = rng(spec.seed ?? 1);
  const pick = <T>(list: readonly T[]): T => list[Math.floor(r() * list.length)];
  const users: PolicyUser[] = [];
  for (let i = 1; i <= spec.users; i++) {
    users.push({
      id: i,
      name: `user${i}`,
      email: `user${i}@example.com`,
      roles: i === 1 ? ["owner", "admin"] : [],
    });
  }
  const tags = Array.from({ length: spec.tags }, (_, i) => `tag:t${i}`);
  const groups: Record<string, string[]> = {};
  for (let g = 0; g < spec.groups; g++) {
    const members = new Set<string>();
    const size = 2 + Math.floor(r() * 8);
    for (let k = 0; k < size; k++) members.add(pick(users).email!);
    groups[`group:g${g}`] = [...members];
  }

  const makeNode = (id: number): PolicyNode => {
    const { ipv4, ipv6 } = nodeAddresses(id);
    const tagged = r() < 0.4;
    const node: PolicyNode = {
      id,
      name: `node${id}`,
      ipv4,
      ipv6,
      userId: tagged ? undefined : pick(users).id,
      tags: tagged ? (r() < 0.8 ? [pick(tags)] : [pick(tags), pick(tags)]) : [],
      advertisedRoutes: [],
      approvedRoutes: [],
    };
    const roll = r();
    if (roll < 0.002) {
      const route = `10.${Math.floor(r() * 250)}.0.0/16`;
      node.advertisedRoutes = [route];
      node.approvedRoutes = [route];
    } else if (roll < 0.003) {
      node.advertisedRoutes = ["0.0.0.0/0", "::/0"];
      node.approvedRoutes = ["0.0.0.0/0", "::/0"];
    }
    return node;
  };
  const nodes = Array.from({ length: spec.nodes }, (_, i) => makeNode(i + 1));

  const groupNames = Object.keys(groups);
  const port = () => pick(["22", "80", "443", "5432", "8000-8100", "*"]);
  const acls: unknown[] = [];
  const grants: unknown[] = [];
  for (let k = 0; k < spec.rules; k++) {
    const roll = r();
    if (roll < 0.45) {
      acls.push({
        action: "accept",
        src: [pick(groupNames)],
        dst: [`${pick(tags)}:${port()}`, `${pick(tags)}:${port()}`],
      });
    } else if (roll < 0.7) {
      acls.push({ action: "accept", src: [pick(tags)], dst: [`${pick(tags)}:${port()}`] });
    } else if (roll < 0.85) {
      grants.push({
        src: [pick(users).email],
        dst: [pick(tags)],
        ip: [`tcp:${pick(["22", "443"])}`],
      });
    } else if (roll < 0.9) {
      acls.push({
        action: "accept",
        src: [pick(groupNames)],
        dst: ["internal:*", `${pick(tags)}:443`],
      });
    } else if (roll < 0.95) {
      grants.push({ src: [pick(groupNames)], dst: ["autogroup:self"], ip: ["*"] });
    } else {
      grants.push({
        src: [pick(tags)],
        dst: [pick(tags)],
        app: { "example.com/cap/app": [{ level: k }] },
      });
    }
  }
  const ssh = Array.from({ length: Math.max(1, Math.floor(spec.rules / 15)) }, () => ({
    action: r() < 0.8 ? "accept" : "check",
    src: [pick(groupNames)],
    dst: [pick(tags)],
    users: r() < 0.5 ? ["root"] : ["autogroup:nonroot", "root"],
  }));
  const tagOwners = Object.fromEntries(tags.map((t) => [t, ["group:g0"]]));
  const policy = JSON.stringify({
    groups,
    tagOwners,
    hosts: { internal: "10.0.0.0/8" },
    acls,
    grants,
    ssh,
    nodeAttrs: [{ target: [pick(tags)], attr: ["funnel"] }],
    autoApprovers: { routes: { "10.0.0.0/8": [tags[0]] }, exitNode: [tags[1]] },
  });
  return { users, nodes, policy, tags, makeNode };
}
