/**
 * The policy's own assertions: `tests` (packet reachability from a source to host:port) and
 * `sshTests` (which login users a source may use on destinations). Each returns a list of
 * human-readable failures; an empty list means every assertion held. A policy whose tests
 * fail must be refused (the hosted service answers "test(s) failed").
 */

import type { PolicyEngine } from "./engine.ts";
import { parseAlias, parseDestination, parseProtocol } from "./syntax.ts";
import type { Alias, Policy, SSHPolicy } from "./types.ts";

const DEFAULT_PROTOS = [6, 17, 1, 58];

function describe(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/** Checks that an alias only names groups, tags and hosts the policy defines. */
function checkKnown(a: Alias, policy: Policy): string | null {
  if (a.kind === "group" && !policy.groups.has(a.name)) {
    return `group ${JSON.stringify(a.name)} is not defined`;
  }
  if (a.kind === "tag" && !policy.tagOwners.has(a.name)) {
    return `tag ${JSON.stringify(a.name)} is not defined`;
  }
  if (a.kind === "host" && !policy.hosts.has(a.name)) {
    return `host ${JSON.stringify(a.name)} is not defined`;
  }
  return null;
}

export function runPolicyTests(policy: Policy, engine: PolicyEngine): string[] {
  const failures: string[] = [];
  const rules = engine.reachabilityRules();
  policy.tests.forEach((t, idx) => {
    const label = `test ${idx} (src ${JSON.stringify(t.src)})`;
    if (t.accept.length === 0 && t.deny.length === 0) {
      failures.push(`${label}: needs at least one of "accept" or "deny"`);
      return;
    }
    let proto: number | undefined;
    if (t.protoName !== undefined) {
      try {
        proto = parseProtocol(t.protoName);
      } catch (e) {
        failures.push(`${label}: ${describe(e)}`);
        return;
      }
      if (![6, 17, 132].includes(proto)) {
        failures.push(`${label}: test protocol must be tcp, udp, sctp, or empty`);
        return;
      }
    }
    if (t.src.trim() === "") {
      failures.push(`${label}: src is empty`);
      return;
    }
    let srcAlias: Alias;
    try {
      srcAlias = parseAlias(t.src);
    } catch (e) {
      failures.push(`${label}: ${describe(e)}`);
      return;
    }
    const unknown = checkKnown(srcAlias, policy);
    if (unknown) {
      failures.push(`${label}: ${unknown}`);
      return;
    }
    const srcAddrs = engine.aliasAddresses(srcAlias).ranges().flatMap((r) => {
      const out: bigint[] = [];
      for (let v = r.lo; v <= r.hi && out.length < 1024; v++) out.push(v);
      return out.map((v) => ({ family: r.family, v }));
    });
    if (srcAddrs.length === 0) {
      failures.push(`${label}: source resolved to no IP addresses`);
      return;
    }
    const protos = proto === undefined ? DEFAULT_PROTOS : [proto];

    const check = (dst: string, want: boolean) => {
      let parsed;
      try {
        parsed = parseDestination(dst);
      } catch (e) {
        failures.push(`${label}: ${describe(e)}`);
        return;
      }
      const { alias, ports } = parsed;
      if (alias.kind === "autogroup" && alias.name === "internet") {
        failures.push(`${label}: autogroup:internet not valid as a test destination`);
        return;
      }
      if (ports.length !== 1 || ports[0].first !== ports[0].last) {
        failures.push(`${label}: destination ${JSON.stringify(dst)}: port must be a single port`);
        return;
      }
      const host = policy.hosts.get(alias.kind === "host" ? alias.name : "");
      const multiHost = (alias.kind === "prefix" && dst.includes("/")) ||
        (host !== undefined && host.prefix.bits < (host.prefix.family === 4 ? 32 : 128));
      if (multiHost) {
        failures.push(
          `${label}: destination ${JSON.stringify(dst)} must be a single host, not a CIDR range`,
        );
        return;
      }
      const unknownDst = checkKnown(alias, policy);
      if (unknownDst) {
        failures.push(`${label}: ${unknownDst}`);
        return;
      }
      const dstSet = alias.kind === "autogroup" && alias.name === "self"
        ? engine.selfAddresses(srcAlias)
        : engine.aliasAddresses(alias);
      if (dstSet.isEmpty()) {
        failures.push(`${label}: destination ${JSON.stringify(dst)} resolved to no IP addresses`);
        return;
      }
      const port = ports[0].first;
      const allowed = srcAddrs.every((s) =>
        rules.some((r) =>
          r.src.contains(s.family, s.v) &&
          (r.protos === undefined || r.protos.some((p) => protos.includes(p))) &&
          r.dst.some((d) =>
            d.ports.some((p) => p.first <= port && port <= p.last) &&
            dstSet.ranges().some((x) => d.set.overlaps(x))
          )
        )
      );
      if (allowed !== want) {
        failures.push(
          `${label} -> ${dst}: expected ${want ? "ALLOWED" : "DENIED"}, got ${
            allowed ? "ALLOWED" : "DENIED"
          }`,
        );
      }
    };
    for (const d of t.accept) check(d, true);
    for (const d of t.deny) check(d, false);
  });
  return failures;
}

/** Whether a login as `user` from `addr` is allowed (any rule) and via a check rule. */
function sshReach(
  pol: SSHPolicy | null,
  addr: string,
  user: string,
): { accept: boolean; check: boolean } {
  const out = { accept: false, check: false };
  if (!pol || user === "") return out;
  for (const r of pol.rules) {
    if (!r.principals.some((p) => p.nodeIP === addr)) continue;
    const mapped = user in r.sshUsers
      ? r.sshUsers[user]
      : (user !== "root" ? r.sshUsers["*"] : undefined);
    if (!mapped) continue;
    out.accept = true;
    if (r.action.holdAndDelegate) out.check = true;
  }
  return out;
}

export function runSSHTests(policy: Policy, engine: PolicyEngine): string[] {
  const failures: string[] = [];
  policy.sshTests.forEach((t, idx) => {
    const label = `sshTest ${idx} (src ${JSON.stringify(t.src)})`;
    if (t.src === "") {
      failures.push(`${label}: src is empty`);
      return;
    }
    if (t.dst.length === 0) {
      failures.push(`${label}: needs at least one dst`);
      return;
    }
    let srcAlias: Alias;
    try {
      srcAlias = parseAlias(t.src);
    } catch (e) {
      failures.push(`${label}: ${describe(e)}`);
      return;
    }
    const srcSet = engine.aliasAddresses(srcAlias);
    const srcAddrs = srcSet.toStrings().filter((s) => !s.includes("/") && !s.includes("-"));
    if (srcAddrs.length === 0) {
      failures.push(`${label}: source resolved to no IP addresses`);
      return;
    }
    if (t.accept.length === 0 && t.deny.length === 0 && t.check.length === 0) {
      failures.push(`${label}: no accept, deny, or check assertions specified`);
      return;
    }
    const dstNodes = new Set<number>();
    for (const d of t.dst) {
      let alias: Alias;
      try {
        alias = parseAlias(d);
      } catch (e) {
        failures.push(`${label}: ${describe(e)}`);
        continue;
      }
      if (alias.kind === "prefix" && alias.range.lo !== alias.range.hi) {
        failures.push(`${label}: dst ${JSON.stringify(d)} is not a single host`);
        continue;
      }
      const set = alias.kind === "autogroup" && alias.name === "self"
        ? engine.selfAddresses(srcAlias)
        : engine.aliasAddresses(alias);
      const ids = alias.kind === "autogroup" && alias.name === "internet"
        ? []
        : engine.nodesWithAddressIn(set);
      if (ids.length === 0) {
        failures.push(`${label}: dst ${JSON.stringify(d)} resolved to no nodes`);
      }
      for (const id of ids) dstNodes.add(id);
    }
    for (const id of dstNodes) {
      const pol = engine.sshPolicyFor(id);
      const name = engine.node(id)?.name ?? String(id);
      for (const user of t.accept) {
        if (!srcAddrs.every((a) => sshReach(pol, a, user).accept)) {
          failures.push(`${label}/${user} -> ${name}: expected ALLOWED, got DENIED`);
        }
      }
      for (const user of t.deny) {
        if (srcAddrs.some((a) => sshReach(pol, a, user).accept)) {
          failures.push(`${label}/${user} -> ${name}: expected DENIED, got ALLOWED`);
        }
      }
      for (const user of t.check) {
        if (!srcAddrs.every((a) => sshReach(pol, a, user).check)) {
          failures.push(`${label}/${user} -> ${name}: expected ALLOWED via check`);
        }
      }
    }
  });
  return failures;
}
