/**
 * The session registry and change fan-out. State change events are collected for a short window
 * (tuning.batch_change_delay) and then turned into one delta per session:
 *
 * - node added/updated → PeersChanged (full node) to the nodes that see it, Node to itself;
 * - node patched → PeersChangedPatch to the nodes that see it;
 * - node removed → PeersRemoved; user renamed → UserProfiles; DERP/DNS → DERPMap/DNSConfig;
 * - policy changed → each session gets only what changed for it (PolicySync): PeersRemoved for
 *   peers it no longer sees, PeersChanged (full nodes, with their users' profiles) for new ones,
 *   PacketFilters when its filter changed, SSHPolicy, and its Node when its capabilities
 *   changed; nothing when nothing changed for it. `resync(ids)` does the same for those nodes
 *   (the ids a policy engine reports as affected by a node change). A full map is sent instead
 *   when that is smaller.
 *
 * Cost is proportional to the affected receivers: each changed node's fragment is built once,
 * receivers are grouped by the exact set of fragments they get (a trie of item indexes), and
 * each group's message is built and compressed once, its bytes shared by all its sessions.
 * A node never gets a patch about itself: Tailscale v1.102 applies a delta's mutations in node id
 * order and stops at the first one for an id that is not its peer, silently dropping the rest
 * (peers added in the same message never reach its netmap); older clients fall back to a full
 * netmap rebuild. So a patched node branches off the shared group like a changed one does.
 */
import type { Logger } from "../log/log.ts";
import type { NodeRecord } from "../store/types.ts";
import type { Change } from "../state/events.ts";
import { ExpiryWatch } from "./expiry_watch.ts";
import { SharedMessage } from "./framing.ts";
import { type Mapper, mergePatch, patchable, peerChangeJson, type PeerPatch } from "./mapper.ts";
import { type PolicyDelta, PolicySync } from "./policy_sync.ts";

/** One open map stream, as the notifier sees it. */
export interface MapSink {
  readonly nodeId: number;
  /** Queue a message on the stream (the sink frames and compresses via SharedMessage). */
  send(msg: SharedMessage): void;
  /** Close the stream (replaced by a newer one, node deleted, or shutdown). */
  close(reason: string): void;
  /**
   * The node was deleted: tell the client (its key is dead, so it asks for a login) and
   * close. Optional; without it the stream is just closed.
   */
  deleted?(): void;
}

export interface NotifierDeps {
  state: {
    subscribe(listener: (changes: readonly Change[]) => void): () => void;
    listNodes(): NodeRecord[];
    getNode(id: number): NodeRecord | undefined;
  };
  mapper: Mapper;
  log: Logger;
  /** How long changes are collected before deltas go out. */
  batchDelayMs: number;
  now?: () => Date;
}

interface Batch {
  full: Set<number>;
  patches: Map<number, PeerPatch>;
  removed: Set<number>;
  /** Nodes that must get their own Node again (key, expiry, or anything a full update covers). */
  self: Set<number>;
  users: Set<number>;
  derp: boolean;
  dns: boolean;
  /** The policy changed: compare every session's policy outputs. */
  policy: boolean;
  /** Sessions whose policy outputs may have changed (compared, then sent what changed). */
  resync: Set<number>;
}

function emptyBatch(): Batch {
  return {
    full: new Set(),
    patches: new Map(),
    removed: new Set(),
    self: new Set(),
    users: new Set(),
    derp: false,
    dns: false,
    policy: false,
    resync: new Set(),
  };
}

/**
 * The policy delta minus what the session's shared message already carries (full nodes of
 * changed peers, removals sent to everyone): often nothing is left, and the session keeps
 * sharing its group's message.
 */
function withoutShared(
  d: PolicyDelta,
  shared: ReadonlySet<number>,
  removedForAll: ReadonlySet<number>,
): PolicyDelta | null {
  const added = d.added.filter((id) => !shared.has(id));
  const removed = d.removed.filter((id) => !removedForAll.has(id));
  if (
    added.length === 0 && removed.length === 0 && d.filterJson === null && d.sshJson === null &&
    !d.selfChanged
  ) return null;
  if (added.length === d.added.length && removed.length === d.removed.length) return d;
  return { ...d, added, removed };
}

/** What every session gets in this batch. */
interface Everyone {
  removed: readonly number[];
  derpJson: string | null;
}

interface Item {
  json: string;
  /** The node a full node or patch is about (-1 for a profile). */
  nodeId: number;
  /** A full node (PeersChanged), a PeerChange, or a renamed user's profile. */
  kind: "full" | "patch" | "profile";
  /** Wire user id of a full node (for UserProfiles). */
  user: number | null;
}

/** A set of items, as a path in a trie keyed by item index (items are added in order). */
class Group {
  private children: Map<number, Group> | undefined;
  message: SharedMessage | undefined;
  /** Ids of the full nodes among the items (computed on first use). */
  fullIds: ReadonlySet<number> | undefined;

  constructor(readonly parent: Group | null, readonly item: number) {}

  with(item: number): Group {
    this.children ??= new Map();
    let child = this.children.get(item);
    if (!child) {
      child = new Group(this, item);
      this.children.set(item, child);
    }
    return child;
  }

  items(): number[] {
    const out: number[] = [];
    if (!this.parent) return out;
    out.push(this.item);
    for (let g = this.parent; g.parent; g = g.parent) out.push(g.item);
    return out.reverse();
  }
}

export class Notifier {
  private readonly sessions = new Map<number, MapSink>();
  private batch = emptyBatch();
  private timer: ReturnType<typeof setTimeout> | undefined;
  private readonly unsubscribe: () => void;
  private readonly expiry: ExpiryWatch;
  /** What each session was last sent of the policy's outputs. */
  readonly policySync: PolicySync;
  /** Totals since start (read by the metrics endpoint); a session gets a delta or a full map. */
  readonly stats = { batches: 0, deltasSent: 0, fullMapsSent: 0 };
  private closed = false;

  constructor(private readonly deps: NotifierDeps) {
    this.policySync = new PolicySync(deps.mapper);
    this.unsubscribe = deps.state.subscribe((changes) => this.onChanges(changes));
    this.expiry = new ExpiryWatch({
      listNodes: () => deps.state.listNodes(),
      now: deps.now,
      onExpired: (ids) => {
        for (const id of ids) {
          deps.mapper.invalidateNode(id);
          this.batch.full.add(id);
          this.batch.self.add(id);
        }
        this.scheduleFlush();
      },
    });
  }

  get sessionCount(): number {
    return this.sessions.size;
  }

  hasSession(nodeId: number): boolean {
    return this.sessions.has(nodeId);
  }

  /**
   * Adds a stream; a previous stream of the same node is closed (a new poll replaces it). The
   * caller sends it a full map built now (its policy outputs are remembered as sent).
   */
  register(sink: MapSink): void {
    const previous = this.sessions.get(sink.nodeId);
    this.sessions.set(sink.nodeId, sink);
    this.policySync.remember(sink.nodeId);
    if (previous && previous !== sink) previous.close("replaced by a newer map stream");
  }

  /** Removes a stream if it is still the node's current one. */
  unregister(sink: MapSink): void {
    if (this.sessions.get(sink.nodeId) === sink) {
      this.sessions.delete(sink.nodeId);
      this.policySync.forget(sink.nodeId);
    }
  }

  /** Records a node's capability version; peers learn it with the next patch. */
  noteCapVersion(nodeId: number, capVer: number): void {
    if (!this.deps.mapper.setCapVersion(nodeId, capVer)) return;
    this.addPatch(nodeId, { cap: capVer });
    this.scheduleFlush();
  }

  private addPatch(id: number, patch: PeerPatch): void {
    const prev = this.batch.patches.get(id);
    this.batch.patches.set(id, prev ? mergePatch(prev, patch) : { ...patch });
  }

  private onChanges(changes: readonly Change[]): void {
    if (this.closed) return;
    const { mapper } = this.deps;
    const b = this.batch;
    const routeCandidates: number[] = [];
    for (const c of changes) {
      switch (c.kind) {
        case "node-added":
        case "node-updated": {
          mapper[c.kind === "node-added" ? "membershipChanged" : "invalidateNode"](c.nodeId);
          b.full.add(c.nodeId);
          b.self.add(c.nodeId);
          routeCandidates.push(c.nodeId);
          this.expiry.noteExpiry(this.deps.state.getNode(c.nodeId)?.expiry ?? null);
          break;
        }
        case "node-patched": {
          const p = c.patch;
          mapper.invalidateNode(c.nodeId);
          if (patchable(p)) this.addPatch(c.nodeId, p);
          else b.full.add(c.nodeId);
          if (p.nodeKey !== undefined || p.keyExpiry !== undefined) b.self.add(c.nodeId);
          if (p.keyExpiry) this.expiry.noteExpiry(p.keyExpiry);
          if (p.online !== undefined) routeCandidates.push(c.nodeId);
          break;
        }
        case "node-removed": {
          mapper.membershipChanged(c.nodeId);
          mapper.forgetCapVersion(c.nodeId);
          b.removed.add(c.nodeId);
          routeCandidates.push(c.nodeId);
          const sink = this.sessions.get(c.nodeId);
          if (sink) {
            this.sessions.delete(c.nodeId);
            this.policySync.forget(c.nodeId);
            if (sink.deleted) sink.deleted();
            else sink.close("node deleted");
          }
          break;
        }
        case "user-updated":
          mapper.invalidateUser(c.userId);
          b.users.add(c.userId);
          break;
        case "policy-changed":
          b.policy = true;
          break;
        case "derp-map-changed":
          mapper.invalidateDerpMap();
          b.derp = true;
          break;
        case "dns-changed":
          mapper.invalidateDns();
          b.dns = true;
          break;
      }
    }
    // Who is primary for a subnet route can change when a router comes, goes, or goes offline;
    // the nodes concerned then have new AllowedIPs, which needs a full node.
    for (const id of mapper.routes.update(routeCandidates)) {
      mapper.invalidateNode(id);
      if (!b.removed.has(id)) b.full.add(id);
    }
    this.scheduleFlush();
  }

  private scheduleFlush(): void {
    if (this.timer !== undefined || this.closed) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.flush();
    }, this.deps.batchDelayMs);
  }

  /** Sends what the current batch holds now (tests, shutdown). */
  flush(): void {
    if (this.timer !== undefined) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
    const b = this.batch;
    this.batch = emptyBatch();
    try {
      this.sendDeltas(b);
    } catch (e) {
      this.deps.log.error("sending map updates failed", { error: e });
    }
  }

  /**
   * With the next batch, compares these nodes' policy outputs (peers, filter, SSH policy,
   * capabilities) with what their sessions were sent and sends each what changed, e.g. for the
   * ids a policy engine reports as affected by a node change. Without ids: every session.
   */
  resync(nodeIds?: Iterable<number>): void {
    if (this.closed) return;
    if (nodeIds === undefined) this.batch.policy = true;
    else for (const id of nodeIds) this.batch.resync.add(id);
    this.scheduleFlush();
  }

  /** A full map on a running stream (its policy outputs were already remembered). */
  private sendFullMap(sink: MapSink): void {
    const msg = this.deps.mapper.fullMapMessage(sink.nodeId, { resync: true });
    if (msg !== null) sink.send(msg);
  }

  /**
   * The nodes whose own attributes changed in this batch (only pairs involving them can have
   * changed visibility), or null when anything may have (a new policy, or a resync with no
   * node change behind it).
   */
  private changedNodes(b: Batch): Set<number> | null {
    if (b.policy) return null;
    const changed = new Set<number>([...b.full, ...b.removed]);
    if (b.users.size > 0) {
      for (const n of this.deps.state.listNodes()) {
        if (n.userId !== null && b.users.has(n.userId)) changed.add(n.id);
      }
    }
    return changed.size > 0 ? changed : null;
  }

  /**
   * Tracks which items each session gets. With a policy where everyone sees everyone, all
   * sessions share one group and only a changed node itself (which must not get itself as a
   * peer, nor a patch about itself) branches off, so the cost is per item, not per item ×
   * session.
   */
  private fanout(): {
    /** Item `index` is about node `nodeId`: to everyone who sees it, never to the node itself. */
    add(index: number, nodeId: number): void;
    /** To the given nodes and everyone who sees one of them. */
    addToViewersOf(index: number, nodeIds: readonly number[]): void;
    groupOf(sessionId: number): Group;
  } {
    const policy = this.deps.mapper.policy;
    const root = new Group(null, -1);
    const own = new Map<number, Group>();
    if (policy.seesEveryone?.()) {
      let common = root;
      return {
        add: (index, nodeId) => {
          if (this.sessions.has(nodeId) && !own.has(nodeId)) own.set(nodeId, common);
          for (const [id, g] of own) {
            if (id !== nodeId) own.set(id, g.with(index));
          }
          common = common.with(index);
        },
        addToViewersOf: (index) => {
          for (const [id, g] of own) own.set(id, g.with(index));
          common = common.with(index);
        },
        groupOf: (id) => own.get(id) ?? common,
      };
    }
    return {
      add: (index, nodeId) => {
        for (const r of policy.peersOf(nodeId)) {
          if (r === nodeId || !this.sessions.has(r)) continue;
          own.set(r, (own.get(r) ?? root).with(index));
        }
      },
      addToViewersOf: (index, nodeIds) => {
        const receivers = new Set<number>();
        for (const n of nodeIds) {
          receivers.add(n);
          for (const r of policy.peersOf(n)) receivers.add(r);
        }
        for (const r of receivers) {
          if (this.sessions.has(r)) own.set(r, (own.get(r) ?? root).with(index));
        }
      },
      groupOf: (id) => own.get(id) ?? root,
    };
  }

  private sendDeltas(b: Batch): void {
    const { mapper } = this.deps;
    const items: Item[] = [];
    const fanout = this.fanout();

    // Removed nodes drop out of everything else; vanished nodes count as removed.
    const full = [...b.full].filter((id) => !b.removed.has(id)).sort((a, z) => a - z);
    for (const id of full) {
      const json = mapper.peerJsonOf(id);
      if (json === null) {
        b.removed.add(id);
        continue;
      }
      const index = items.push({ json, nodeId: id, kind: "full", user: mapper.wireUserOf(id) }) -
        1;
      fanout.add(index, id);
    }
    const patched = [...b.patches.keys()]
      .filter((id) => !b.full.has(id) && !b.removed.has(id))
      .sort((a, z) => a - z);
    for (const id of patched) {
      const json = peerChangeJson(id, b.patches.get(id)!);
      const index = items.push({ json, nodeId: id, kind: "patch", user: null }) - 1;
      fanout.add(index, id);
    }
    // A renamed user's profile goes to the nodes that see one of the user's nodes.
    for (const userId of [...b.users].sort((a, z) => a - z)) {
      const json = mapper.profileJsonOf(userId);
      if (json === null) continue;
      const index = items.push({ json, nodeId: -1, kind: "profile", user: userId }) - 1;
      const owned = this.deps.state.listNodes().filter((n) => n.userId === userId);
      fanout.addToViewersOf(index, owned.map((n) => n.id));
    }

    const removed = [...b.removed].sort((a, z) => a - z);
    const log = this.deps.log;
    const trace = log.enabled("trace");
    let sent = 0;
    let messages = 0;
    let policyDeltas = 0;
    let fullMaps = 0;
    const everyone: Everyone = { removed, derpJson: b.derp ? mapper.derpMapJson() : null };
    const hasEveryone = removed.length > 0 || b.derp;

    // Policy outputs: every session after a new policy, else the sessions asked for.
    const round = this.policySync.round(this.changedNodes(b));
    const comparesAll = b.policy;
    const tracksPeers = !mapper.policy.seesEveryone?.();
    /** Identical personal messages (e.g. the same filter change) are built once. */
    const personal = new Map<string, SharedMessage>();
    const fullIdsOf = (group: Group): ReadonlySet<number> =>
      group.fullIds ??= new Set(
        group.items().filter((i) => items[i].kind === "full").map((i) => items[i].nodeId),
      );

    try {
      for (const sink of [...this.sessions.values()]) {
        const id = sink.nodeId;
        const group = fanout.groupOf(id);
        let policy: PolicyDelta | null = null;
        if (comparesAll || b.resync.has(id)) {
          policy = round.diff(id);
          if (policy?.full) {
            this.sendFullMap(sink);
            fullMaps++;
            continue;
          }
          if (policy) policy = withoutShared(policy, fullIdsOf(group), b.removed);
          if (policy) policyDeltas++;
        } else if (tracksPeers && group.parent !== null) {
          const fullIds = fullIdsOf(group);
          if (fullIds.size > 0) round.noteReceived(id, [...fullIds]);
        }
        const wantsSelf = b.self.has(id) || (policy?.selfChanged ?? false);
        const node = wantsSelf || b.dns ? this.deps.state.getNode(id) : undefined;
        const selfJson = wantsSelf && node ? JSON.stringify(mapper.selfNode(node)) : null;
        const dnsJson = b.dns && node ? mapper.dnsConfigJsonFor(node) : null;
        if (group.parent === null && selfJson === null && dnsJson === null && policy === null) {
          if (!hasEveryone) continue;
        }
        const own = selfJson !== null || policy !== null ||
          (dnsJson !== null && mapper.dnsIsPerNode());
        let msg = own ? undefined : group.message;
        if (!msg) {
          const json = this.deltaJson(group.items().map((i) => items[i]), everyone, {
            selfJson,
            dnsJson,
            policy,
          });
          if (own) {
            msg = personal.get(json);
            if (!msg) {
              msg = new SharedMessage(json);
              if (json.length <= 65536) personal.set(json, msg);
              messages++;
            }
          } else {
            msg = new SharedMessage(json);
            group.message = msg;
            messages++;
          }
        }
        if (trace) log.trace("delta", { node: id, json: msg.json.slice(0, 2000) });
        sink.send(msg);
        sent++;
      }
    } finally {
      round.end();
    }
    this.stats.batches++;
    this.stats.deltasSent += sent;
    this.stats.fullMapsSent += fullMaps;
    log.debug("deltas sent", {
      full: full.length,
      patched: patched.length,
      removed: removed.length,
      sessions: sent,
      messages,
      policyDeltas,
      fullMaps,
    });
  }

  private deltaJson(
    list: Item[],
    everyone: Everyone,
    extra: { selfJson: string | null; dnsJson: string | null; policy: PolicyDelta | null },
  ): string {
    const { mapper } = this.deps;
    const policy = extra.policy;
    // Peers the policy no longer shows this node: no full node or patch about them may follow
    // (a client stops applying a delta at a patch for a node that is not its peer).
    const gone = policy && policy.removed.length > 0 ? new Set(policy.removed) : null;
    const parts: string[] = [];
    if (extra.selfJson !== null) parts.push(`"Node":${extra.selfJson}`);
    const changed = list.filter((i) => i.kind === "full" && !gone?.has(i.nodeId));
    const patches = list.filter((i) => i.kind === "patch" && !gone?.has(i.nodeId));
    const users = new Set<number>();
    for (const i of changed) if (i.user !== null) users.add(i.user);
    const changedJson = changed.map((i) => i.json);
    if (policy && policy.added.length > 0) {
      const listed = new Set(changed.map((i) => i.nodeId));
      for (const id of policy.added) {
        if (listed.has(id)) continue;
        const entry = mapper.peerEntry(id);
        if (entry === null) continue;
        changedJson.push(entry.json);
        users.add(entry.user);
      }
    }
    if (changedJson.length > 0) parts.push(`"PeersChanged":[${changedJson.join(",")}]`);
    if (patches.length > 0) {
      parts.push(`"PeersChangedPatch":[${patches.map((i) => i.json).join(",")}]`);
    }
    const removed = gone ? [...new Set([...everyone.removed, ...gone])] : everyone.removed;
    if (removed.length > 0) parts.push(`"PeersRemoved":[${removed.join(",")}]`);
    if (everyone.derpJson !== null) parts.push(`"DERPMap":${everyone.derpJson}`);
    if (extra.dnsJson !== null) parts.push(`"DNSConfig":${extra.dnsJson}`);
    // Named filter "base" is what PacketFilter sets, and what full maps use.
    if (policy?.filterJson) parts.push(`"PacketFilters":{"base":${policy.filterJson}}`);
    if (policy?.sshJson) parts.push(`"SSHPolicy":${policy.sshJson}`);
    const profiles = new Set(list.filter((i) => i.kind === "profile").map((i) => i.json));
    for (const u of users) {
      const p = mapper.profileJsonOf(u);
      if (p !== null) profiles.add(p);
    }
    if (profiles.size > 0) parts.push(`"UserProfiles":[${[...profiles].join(",")}]`);
    return `{${parts.join(",")}}`;
  }

  /** Stops batching and closes every stream. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
    this.unsubscribe();
    this.expiry.close();
    for (const sink of [...this.sessions.values()]) sink.close("server shutting down");
    this.sessions.clear();
  }
}
