/**
 * A node's Tailscale SSH policy (tailcfg.SSHPolicy): for every ssh rule that names the node as
 * a destination, the source devices as principals (grouped per user), the login map and the
 * action. Check rules come before accept rules; within each, policy order.
 */

import type { CompiledSSHRule } from "./compile.ts";
import { formatAddr, IPSet } from "./ipset.ts";
import { Bitset } from "./nodeset.ts";
import type { NodeRec, Tailnet } from "./tailnet.ts";
import type { SSHAction, SSHPolicy, SSHPrincipal, SSHRule } from "./types.ts";

const ACCEPT: SSHAction = {
  accept: true,
  allowAgentForwarding: true,
  allowLocalPortForwarding: true,
  allowRemotePortForwarding: true,
};

/** A check rule without checkPeriod: 12 hours, as Tailscale and headscale. */
export const DEFAULT_CHECK_PERIOD_MS = 12 * 3600_000;

export function checkAction(baseURL: string): SSHAction {
  return {
    holdAndDelegate:
      `${baseURL}/machine/ssh/action/$SRC_NODE_ID/to/$DST_NODE_ID?local_user=$LOCAL_USER`,
  };
}

/** Sources of one ssh rule, grouped the way principals are emitted. */
interface SSHSources {
  nodes: Bitset;
  userIds: number[];
  byUser: Map<number, SSHPrincipal[]>;
  tagged: SSHPrincipal[];
}

function principalsOf(nodes: NodeRec[]): SSHPrincipal[] {
  const set = IPSet.of(
    nodes.flatMap((n) => n.ips.map((ip) => ({ family: ip.family, lo: ip.value, hi: ip.value }))),
  );
  const out: SSHPrincipal[] = [];
  for (const r of set.ranges()) {
    for (let v = r.lo; v <= r.hi; v++) {
      out.push({ nodeIP: formatAddr(r.family, v) });
    }
  }
  return out;
}

function compareAddrs(a: NodeRec, b: NodeRec): number {
  const x = a.ips[0], y = b.ips[0];
  if (!x || !y) return (x ? 1 : 0) - (y ? 1 : 0) || a.id - b.id;
  if (x.family !== y.family) return x.family - y.family;
  return x.value < y.value ? -1 : x.value > y.value ? 1 : a.id - b.id;
}

export class SSHCompiler {
  private readonly sources = new Map<number, SSHSources>();
  private readonly signatures = new Map<number, string>();

  constructor(
    private readonly rules: readonly CompiledSSHRule[],
    private readonly tailnet: Tailnet,
  ) {}

  /**
   * Forgets the sources of rules a change to these membership keys could alter. Grouping by
   * owner and per-tag repetition mean a rule over autogroup:member also depends on every
   * owner key, and one over tagged devices on every tag key.
   */
  invalidate(changed: ReadonlySet<string>, everything = false): void {
    if (everything) {
      this.sources.clear();
      this.signatures.clear();
      return;
    }
    const owners = [...changed].some((k) => k.startsWith("u:"));
    const tags = [...changed].some((k) => k.startsWith("t:"));
    this.rules.forEach((r, i) => {
      const hit = r.src.some((s) =>
        s.t !== "key" ||
        changed.has(s.key) ||
        (s.key === "member" && owners) ||
        // Tagged devices are listed once per tag: any tag change can alter the count.
        ((s.key === "tagged" || s.key.startsWith("t:")) && tags) ||
        (s.key === "*" && changed.size > 0)
      );
      if (hit) {
        this.sources.delete(i);
        this.signatures.delete(i);
      }
    });
  }

  /** Source nodes of a rule (by membership; SSH sources are identities, never addresses). */
  sourcesOf(i: number): SSHSources {
    let s = this.sources.get(i);
    if (s) return s;
    const tn = this.tailnet;
    const nodes = new Bitset(tn.slotToId.length);
    for (const sel of this.rules[i].src) {
      if (sel.t === "key") nodes.orWith(tn.membersOf(sel.key));
      else if (sel.t === "all" || sel.t === "dangerAll") nodes.orWith(tn.allSlots());
      else if (sel.t === "addr") tn.nodesInSet(sel.set, nodes);
    }
    const perUser = new Map<number, NodeRec[]>();
    const tagged: SSHPrincipal[] = [];
    const taggedNodes: NodeRec[] = [];
    for (const slot of nodes.bits()) {
      const n = tn.bySlot(slot);
      if (n.tagged) {
        taggedNodes.push(n);
      } else if (n.userId !== undefined) {
        const list = perUser.get(n.userId) ?? [];
        list.push(n);
        perUser.set(n.userId, list);
      }
    }
    // In address order, so the output does not depend on internal slot numbers. The service
    // lists a tagged device once per tag it carries.
    taggedNodes.sort((a, b) => compareAddrs(a, b));
    for (const n of taggedNodes) {
      for (let k = 0; k < n.tags.length; k++) {
        for (const ip of n.ipStrings) tagged.push({ nodeIP: ip });
      }
    }
    const userIds = [...perUser.keys()].sort((a, b) => a - b);
    const byUser = new Map(userIds.map((u) => [u, principalsOf(perUser.get(u)!)]));
    s = { nodes, userIds, byUser, tagged };
    this.sources.set(i, s);
    return s;
  }

  /** A rule's principals in one string: equal strings, equal principals everywhere. */
  signature(i: number): string {
    let sig = this.signatures.get(i);
    if (sig === undefined) {
      const s = this.sourcesOf(i);
      sig = JSON.stringify([s.userIds.map((u) => [u, s.byUser.get(u)]), s.tagged]);
      this.signatures.set(i, sig);
    }
    return sig;
  }

  /** Is node n a destination of rule i (other than through autogroup:self)? */
  isDestination(i: number, n: NodeRec): boolean {
    for (const sel of this.rules[i].dst) {
      if (sel.t === "key" && n.keys.includes(sel.key)) return true;
      if (sel.t === "all") return true;
    }
    return false;
  }

  /**
   * The check period (ms) of the first check rule, in policy order, that lets `src` in to `dst`
   * (0: check every session), or null when no check rule covers the pair. The SSH-check endpoint
   * asks this instead of trusting what the client's URL says.
   */
  checkPeriodMs(src: NodeRec, dst: NodeRec): number | null {
    for (let i = 0; i < this.rules.length; i++) {
      const r = this.rules[i];
      if (r.action !== "check" || !this.sourcesOf(i).nodes.has(src.slot)) continue;
      const self = r.dstSelf && !src.tagged && !dst.tagged && src.userId !== undefined &&
        src.userId === dst.userId;
      if (self || this.isDestination(i, dst)) {
        return r.checkPeriodNs === undefined
          ? DEFAULT_CHECK_PERIOD_MS
          : Math.floor(r.checkPeriodNs / 1e6);
      }
    }
    return null;
  }

  policyFor(n: NodeRec, baseURL: string): SSHPolicy | null {
    if (this.rules.length === 0) return null;
    const out: SSHRule[] = [];
    this.rules.forEach((r, i) => {
      const selfDst = r.dstSelf && !n.tagged && n.userId !== undefined;
      const isDst = r.dst.length > 0 && this.isDestination(i, n);
      if (!selfDst && !isDst && !r.hasLocalpart) return;
      const src = this.sourcesOf(i);
      if (src.nodes.isEmpty()) return;
      const action = r.action === "accept" ? { ...ACCEPT } : checkAction(baseURL);
      const hasLocalpart = r.hasLocalpart;
      const base = r.baseUsers;
      const emit = (principals: SSHPrincipal[], uid?: number) => {
        if (principals.length === 0) return;
        const rule: SSHRule = {
          principals: principals.map((p) => ({ ...p })),
          sshUsers: { ...base },
          action: { ...action },
        };
        if (r.acceptEnv) rule.acceptEnv = [...r.acceptEnv];
        out.push(rule);
        const lp = uid === undefined ? undefined : r.localparts.get(uid);
        if (lp !== undefined) {
          const extra: SSHRule = {
            principals: principals.map((p) => ({ ...p })),
            sshUsers: { [lp]: lp },
            action: { ...action },
          };
          if (r.acceptEnv) extra.acceptEnv = [...r.acceptEnv];
          out.push(extra);
        }
      };

      if (selfDst) emit(src.byUser.get(n.userId!) ?? [], n.userId);
      if (r.dst.length === 0) return;
      if (isDst) {
        if (hasLocalpart) {
          for (const uid of src.userIds) emit(src.byUser.get(uid)!, uid);
          emit(src.tagged);
        } else {
          emit([...src.userIds.flatMap((uid) => src.byUser.get(uid)!), ...src.tagged]);
        }
      } else if (hasLocalpart && src.nodes.has(n.slot)) {
        // A source that is not a destination still gets its own user's rules.
        if (n.tagged) emit(n.ipStrings.map((ip) => ({ nodeIP: ip })));
        else if (n.userId !== undefined) emit(src.byUser.get(n.userId) ?? [], n.userId);
      }
    });
    // Check rules first (most restrictive), stable otherwise.
    const checks = out.filter((r) => r.action.holdAndDelegate);
    const accepts = out.filter((r) => !r.action.holdAndDelegate);
    return { rules: [...checks, ...accepts] };
  }
}
