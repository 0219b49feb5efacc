/**
 * Policy conformance runner: replays captured cases (policy + topology + what Tailscale's hosted
 * control plane answered) through lib/policy and compares, per node, the packet filter, the
 * SSH rules, the peer set and the policy-derived capabilities; rejected policies must be
 * rejected too.
 *
 *   deno task policy-compat [DIR] [--verbose] [--only SUBSTRING]
 *
 * DIR defaults to ../shared/policy-compat next to the repository. Prints one line per
 * category, then "N passed, N failed". Exits 1 when a case fails that is not listed in
 * scripts/policy_compat_skip.json (case id → reason).
 *
 * Comparison rules: SrcIPs, DstPorts IPs and CapGrant Dsts are compared as address sets (a
 * range and the CIDRs covering it are equal); DstPorts within a rule and SSH principals are
 * multisets; rule order is significant.
 */

import { IPSet } from "../lib/policy/ipset.ts";
import {
  checkPolicy,
  type FilterRule,
  parsePolicy,
  PolicyEngine,
  PolicyError,
  type PolicyNode,
  type PolicyUser,
} from "../lib/policy/mod.ts";

interface CaseNode {
  hostname: string;
  tags: string[] | null;
  ipv4: string;
  ipv6: string;
  user?: string;
  routable_ips: string[] | null;
  approved_routes: string[] | null;
}

interface CaptureNode {
  packet_filter_rules: FilterRule[] | null;
  ssh_rules: unknown[] | null;
  self: { cap_map: Record<string, unknown> | null };
  peers: { name: string }[] | null;
}

interface Case {
  id: string;
  category: string;
  policy: string | Record<string, unknown>;
  saas: { status: number; body: { message?: string } | null };
  topology: {
    users: { id: number; name: string; email: string }[];
    nodes: Record<string, CaseNode>;
  };
  nodes?: Record<string, CaptureNode>;
}

/** Capabilities the hosted service sets on every node regardless of policy. */
const SERVICE_CAPS = new Set([
  "https://tailscale.com/cap/file-sharing",
  "https://tailscale.com/cap/is-admin",
  "https://tailscale.com/cap/is-owner",
  "https://tailscale.com/cap/ssh",
  "https://tailscale.com/cap/tailnet-lock",
  "probe-udp-lifetime",
  "ssh-behavior-v1",
  "ssh-env-vars",
  "store-appc-routes",
  "tailnet-display-name",
  "default-auto-update",
]);

function canonJSON(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonJSON).join(",")}]`;
  if (v && typeof v === "object") {
    return `{${
      Object.keys(v).sort().map((k) =>
        `${JSON.stringify(k)}:${canonJSON((v as Record<string, unknown>)[k])}`
      ).join(",")
    }}`;
  }
  return JSON.stringify(v);
}

function addrKey(texts: readonly string[]): string {
  if (texts.includes("*")) return "*";
  return IPSet.fromStrings(texts).key();
}

function normFilter(rules: FilterRule[] | null | undefined): string[] {
  return (rules ?? []).map((r) => {
    const dst = (r.DstPorts ?? []).map((d) =>
      `${d.IP === "*" ? "*" : addrKey([d.IP])}:${d.Ports.First}-${d.Ports.Last}`
    )
      .sort();
    const caps = (r.CapGrant ?? []).map((c) =>
      `${addrKey(c.Dsts)}=>${canonJSON(c.CapMap ?? null)}`
    );
    const proto = [...(r.IPProto ?? [])].sort((a, b) => a - b);
    return canonJSON({ src: addrKey(r.SrcIPs ?? []), dst, caps, proto });
  });
}

function normSSH(rules: unknown[] | null | undefined): string[] {
  return (rules ?? []).map((raw) => {
    const r = raw as {
      principals?: { nodeIP?: string }[];
      sshUsers?: unknown;
      action?: unknown;
      acceptEnv?: unknown;
    };
    const principals = (r.principals ?? []).map((p) => canonJSON(p)).sort();
    return canonJSON({
      principals,
      sshUsers: r.sshUsers ?? {},
      action: r.action ?? null,
      acceptEnv: r.acceptEnv ?? null,
    });
  });
}

function policyCaps(m: Record<string, unknown> | null | undefined): string {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(m ?? {})) if (!SERVICE_CAPS.has(k)) out[k] = v ?? null;
  return canonJSON(out);
}

function diffLists(want: string[], got: string[]): string {
  const lines: string[] = [];
  const n = Math.max(want.length, got.length);
  for (let i = 0; i < n; i++) {
    if (want[i] === got[i]) continue;
    lines.push(`      [${i}] want ${want[i] ?? "(none)"}`);
    lines.push(`      [${i}] got  ${got[i] ?? "(none)"}`);
  }
  return lines.join("\n");
}

/** The case's users, with roles read from what their own devices were told. */
function caseUsers(c: Case): PolicyUser[] {
  return c.topology.users.map((u) => {
    const roles = new Set<string>();
    for (const [name, n] of Object.entries(c.topology.nodes)) {
      if ((n.tags ?? []).length > 0 || n.user !== u.name) continue;
      const caps = c.nodes?.[name]?.self.cap_map ?? {};
      if ("https://tailscale.com/cap/is-owner" in caps) roles.add("owner");
      if ("https://tailscale.com/cap/is-admin" in caps) roles.add("admin");
    }
    return { id: u.id, name: u.name, email: u.email, roles: [...roles] };
  });
}

function caseNodes(
  c: Case,
  users: PolicyUser[],
): { nodes: PolicyNode[]; names: Map<number, string> } {
  const names = new Map<number, string>();
  const nodes = Object.keys(c.topology.nodes).sort().map((name, i) => {
    const n = c.topology.nodes[name];
    const id = i + 1;
    names.set(id, name);
    return {
      id,
      name: n.hostname ?? name,
      ipv4: n.ipv4,
      ipv6: n.ipv6,
      userId: (n.tags ?? []).length > 0 ? undefined : users.find((u) => u.name === n.user)?.id,
      tags: n.tags ?? [],
      advertisedRoutes: n.routable_ips ?? [],
      approvedRoutes: n.approved_routes ?? [],
    };
  });
  return { nodes, names };
}

interface Outcome {
  pass: boolean;
  detail: string[];
}

function runCase(c: Case): Outcome {
  const detail: string[] = [];
  const text = typeof c.policy === "string" ? c.policy : JSON.stringify(c.policy);
  const users = caseUsers(c);
  const { nodes, names } = caseNodes(c, users);
  // The tailnet is named after its first user; its email domain is the tailnet's domain.
  const first = [...c.topology.users].sort((a, b) => a.id - b.id)[0];
  const tailnetDomains = first?.email
    ? [first.email.slice(first.email.indexOf("@") + 1)]
    : undefined;

  let engine: PolicyEngine;
  try {
    engine = new PolicyEngine(parsePolicy(text), users, nodes, { tailnetDomains });
    // The service approves advertised routes its autoApprovers cover, whatever the capture
    // recorded as approved; then the policy's tests run against that tailnet.
    const approved = nodes.map((n) => ({
      ...n,
      approvedRoutes: [...new Set([...n.approvedRoutes, ...engine.autoApprovedRoutes(n)])],
    }));
    engine = checkPolicy(text, users, approved, { tailnetDomains }).engine;
  } catch (e) {
    if (!(e instanceof PolicyError)) {
      return { pass: false, detail: [`  crashed: ${(e as Error).stack}`] };
    }
    if (c.saas.status === 200) return { pass: false, detail: [`  rejected: ${e.message}`] };
    const want = c.saas.body?.message ?? "";
    if (want && !e.message.includes(want)) {
      detail.push(
        `  (message differs) want ${JSON.stringify(want)} got ${JSON.stringify(e.message)}`,
      );
    }
    return { pass: true, detail };
  }
  if (c.saas.status !== 200) {
    return {
      pass: false,
      detail: [`  accepted, but the service said ${c.saas.status}: ${c.saas.body?.message ?? ""}`],
    };
  }

  const idByName = new Map([...names].map(([id, name]) => [name, id]));
  let pass = true;
  for (const [name, cap] of Object.entries(c.nodes ?? {})) {
    const id = idByName.get(name);
    if (id === undefined) {
      pass = false;
      detail.push(`  ${name}: not in topology`);
      continue;
    }
    const wantF = normFilter(cap.packet_filter_rules);
    const gotF = normFilter(engine.filterFor(id));
    if (canonJSON(wantF) !== canonJSON(gotF)) {
      pass = false;
      detail.push(`  ${name}: filter\n${diffLists(wantF, gotF)}`);
    }
    const wantS = normSSH(cap.ssh_rules);
    const gotS = normSSH(engine.sshPolicyFor(id)?.rules);
    if (canonJSON(wantS) !== canonJSON(gotS)) {
      pass = false;
      detail.push(`  ${name}: ssh\n${diffLists(wantS, gotS)}`);
    }
    const wantP = (cap.peers ?? []).map((p) => p.name).sort();
    const gotP = [...engine.peersOf(id)].map((p) => names.get(p)!).sort();
    if (wantP.join() !== gotP.join()) {
      pass = false;
      const missing = wantP.filter((p) => !gotP.includes(p));
      const extra = gotP.filter((p) => !wantP.includes(p));
      detail.push(`  ${name}: peers missing [${missing}] extra [${extra}]`);
    }
    const wantC = policyCaps(cap.self.cap_map);
    const gotC = policyCaps(engine.capMapFor(id));
    if (wantC !== gotC) {
      pass = false;
      detail.push(`  ${name}: capmap want ${wantC} got ${gotC}`);
    }
  }
  return { pass, detail };
}

async function* caseFiles(dir: string): AsyncGenerator<string> {
  const entries: Deno.DirEntry[] = [];
  for await (const e of Deno.readDir(dir)) entries.push(e);
  entries.sort((a, b) => a.name.localeCompare(b.name));
  for (const e of entries) {
    const path = `${dir}/${e.name}`;
    if (e.isDirectory) yield* caseFiles(path);
    else if (e.isFile && e.name.endsWith(".json")) yield path;
  }
}

async function main(): Promise<number> {
  const args = [...Deno.args];
  const verbose = args.includes("--verbose") || args.includes("-v");
  const onlyIdx = args.indexOf("--only");
  const only = onlyIdx >= 0 ? args[onlyIdx + 1] : undefined;
  const positional = args.filter((a, i) =>
    !a.startsWith("-") && (onlyIdx < 0 || i !== onlyIdx + 1)
  );
  const dir = positional[0] ?? new URL("../../shared/policy-compat", import.meta.url).pathname;

  const skipURL = new URL("./policy_compat_skip.json", import.meta.url);
  let skips: Record<string, string> = {};
  try {
    skips = JSON.parse(await Deno.readTextFile(skipURL));
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }

  const perCategory = new Map<string, { passed: number; failed: number }>();
  let passed = 0, failed = 0;
  const unexpected: string[] = [];
  const staleSkips: string[] = [];
  for await (const path of caseFiles(dir)) {
    let c: Case;
    try {
      c = JSON.parse(await Deno.readTextFile(path));
    } catch (e) {
      console.error(`${path}: unreadable case: ${(e as Error).message}`);
      failed++;
      unexpected.push(path);
      continue;
    }
    if (!c.id || !c.topology) continue;
    if (only && !c.id.includes(only)) continue;
    const category = c.category ?? "uncategorised";
    const counts = perCategory.get(category) ?? { passed: 0, failed: 0 };
    perCategory.set(category, counts);
    const out = runCase(c);
    if (out.pass) {
      passed++;
      counts.passed++;
      if (skips[c.id]) staleSkips.push(c.id);
      if (verbose && out.detail.length > 0) console.log(`PASS ${c.id}\n${out.detail.join("\n")}`);
    } else {
      failed++;
      counts.failed++;
      if (!skips[c.id]) unexpected.push(c.id);
      if (verbose || !skips[c.id]) {
        console.log(
          `FAIL ${c.id}${skips[c.id] ? ` (known: ${skips[c.id]})` : ""}\n${out.detail.join("\n")}`,
        );
      }
    }
  }
  for (const [cat, n] of [...perCategory].sort()) {
    console.log(`${cat}: ${n.passed} passed, ${n.failed} failed`);
  }
  for (const id of staleSkips) console.log(`note: ${id} passes; remove it from the skip list`);
  console.log(`${passed} passed, ${failed} failed`);
  return unexpected.length > 0 ? 1 : 0;
}

if (import.meta.main) {
  try {
    Deno.exit(await main());
  } catch (e) {
    console.error(`policy-compat: ${(e as Error).message}`);
    Deno.exit(2);
  }
}
