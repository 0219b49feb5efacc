/**
 * Keeps the policy engine in step with the tailnet and the configured policy source:
 * `policy.mode: file` (reloaded on SIGHUP and when the file changes) or `database` (set through
 * the API). A bad new policy is refused with a clear message and the old one stays in force.
 *
 * Node changes reach the engine through `apply` (server.ts calls it for every batch of State
 * events, before the notifier); it answers which nodes' outputs may have changed, and only those
 * sessions are resynced. Routes that an autoApprover covers are approved here, as headscale does.
 */
import { basename, dirname, resolve } from "node:path";
import type { Config } from "../config/config.ts";
import type { Logger } from "../log/log.ts";
import type { State } from "../state/state.ts";
import type { Store } from "../store/types.ts";
import type { NodeRecord } from "../store/types.ts";
import type { Change } from "../state/events.ts";
import {
  parsePolicy,
  type Policy,
  PolicyEngine,
  PolicyError,
  type PolicyNode,
  type PolicyUser,
  runPolicyTests,
  runSSHTests,
} from "../policy/mod.ts";
import { advertisedRoutes } from "../state/routes.ts";
import { readConfiguredFile } from "../server/startup_files.ts";
import { PolicyInvalidError, PolicyModeError } from "./errors.ts";

export interface PolicyTarget {
  /** The engine to ask, or null when no policy is configured (everyone reaches everyone). */
  setPolicy(engine: PolicyEngine | null): void;
}

const NONE: ReadonlySet<number> = new Set();

export function toPolicyNode(n: NodeRecord): PolicyNode {
  return {
    id: n.id,
    name: n.givenName,
    ipv4: n.ipv4 ?? undefined,
    ipv6: n.ipv6 ?? undefined,
    userId: n.userId ?? undefined,
    tags: n.tags,
    advertisedRoutes: advertisedRoutes(n),
    approvedRoutes: n.approvedRoutes,
  };
}

export interface PolicyManagerDeps {
  config: Config;
  store: Store;
  state: State;
  log: Logger;
}

export class PolicyManager {
  private engine!: PolicyEngine;
  private text = "";
  private hasPolicy = false;
  /** Ids of the users the engine knows (state announces renames, not new users: see syncUsers). */
  private knownUsers = new Set<number>();
  private updatedAt: Date | null = null;
  private target: PolicyTarget | undefined;
  private watcher: Deno.FsWatcher | undefined;
  private reloadTimer: ReturnType<typeof setTimeout> | undefined;
  private readonly onSighup = () => void this.reloadFile("SIGHUP");

  private constructor(private readonly deps: PolicyManagerDeps) {}

  /** Loads the configured policy; an invalid one stops the start with a clear error. */
  static async open(deps: PolicyManagerDeps): Promise<PolicyManager> {
    const m = new PolicyManager(deps);
    const { mode, path } = deps.config.policy;
    let text = "";
    if (mode === "database") {
      text = (await deps.store.getPolicy()) ?? "";
    } else if (path !== "") {
      text = await readConfiguredFile("policy.path", path);
    }
    const policy = m.parse(text, mode === "file" ? path : "the stored policy");
    m.engine = m.build(policy, false);
    m.knownUsers = new Set(deps.state.listUsers().map((u) => u.id));
    m.hasPolicy = policy !== null;
    m.text = text;
    m.updatedAt = text === "" ? null : new Date();
    return m;
  }

  /** Hands the engine to the control plane and starts watching the policy file. */
  attach(target: PolicyTarget): void {
    this.target = target;
    target.setPolicy(this.hasPolicy ? this.engine : null);
    for (const node of this.deps.state.listNodes()) this.autoApprove(node);
    if (this.deps.config.policy.mode === "file" && this.deps.config.policy.path !== "") {
      Deno.addSignalListener("SIGHUP", this.onSighup);
      this.watch(this.deps.config.policy.path);
    }
  }

  private parse(text: string, source: string): Policy | null {
    if (text.trim() === "") return null;
    try {
      return parsePolicy(text);
    } catch (e) {
      if (e instanceof PolicyError) throw new PolicyError(`${source}: ${e.message}`);
      throw e;
    }
  }

  private users(): PolicyUser[] {
    return this.deps.state.listUsers().map((u) => ({
      id: u.id,
      name: u.name,
      email: u.email || undefined,
    }));
  }

  /**
   * Builds an engine over the current tailnet; with `runTests`, also runs the policy's own tests
   * (on every change; not at startup, where the tailnet may not have the nodes they name yet).
   */
  private build(policy: Policy | null, runTests = true): PolicyEngine {
    const engine = new PolicyEngine(
      policy,
      this.users(),
      this.deps.state.listNodes().map(toPolicyNode),
      // At boot the policy was accepted before: don't refuse to start over tailnet-dependent checks.
      { serverURL: this.deps.config.serverUrl, trustPolicy: !runTests },
    );
    if (policy && runTests) {
      const failures = [...runPolicyTests(policy, engine), ...runSSHTests(policy, engine)];
      if (failures.length > 0) {
        throw new PolicyError(`the policy's tests failed:\n${failures.join("\n")}`);
      }
    }
    return engine;
  }

  /**
   * Tells the engine about node and user changes; returns the nodes whose filter or peers they
   * touched (they get what changed for them). The changed nodes themselves reach their peers
   * through the normal deltas; without a policy nothing but the node changes.
   */
  apply(changes: readonly Change[]): ReadonlySet<number> {
    const affected = new Set<number>();
    for (const c of changes) {
      let ids: number[] = [];
      if (c.kind === "node-added" || c.kind === "node-updated") {
        const node = this.deps.state.getNode(c.nodeId);
        if (!node) continue;
        // A user created after the engine was built is news to it: "alice@" would match nothing.
        // A user with no node yet changes no node's outputs, so the ids that matter are the
        // upsert's.
        if (node.userId !== null && !this.knownUsers.has(node.userId)) this.syncUsers();
        // Without a policy nobody asks who is affected: keep the engine current, nothing more.
        if (this.hasPolicy) ids = this.engine.upsertNode(toPolicyNode(node));
        else this.engine.trackNode(toPolicyNode(node));
        this.autoApprove(node);
      } else if (c.kind === "node-removed") {
        if (this.hasPolicy) ids = this.engine.removeNode(c.nodeId);
        else this.engine.untrackNode(c.nodeId);
      } else if (c.kind === "user-updated") {
        ids = this.syncUsers();
      }
      for (const id of ids) affected.add(id);
    }
    return this.hasPolicy ? affected : NONE;
  }

  /** Approves advertised routes an autoApprover covers (headscale approves them on sight). */
  private autoApprove(node: NodeRecord): void {
    const wanted = advertisedRoutes(node).filter((r) =>
      !node.approvedRoutes.includes(r) && this.engine.autoApprove(node.id, r)
    );
    if (wanted.length === 0) return;
    this.deps.state.setApprovedRoutes(node.id, [...node.approvedRoutes, ...wanted]).catch((e) =>
      this.deps.log.error("auto-approving routes failed", { node: node.id, error: e })
    );
  }

  /** Hands the engine the current user list; returns the nodes whose outputs may have changed. */
  private syncUsers(): number[] {
    const users = this.users();
    this.knownUsers = new Set(users.map((u) => u.id));
    return this.engine.setUsers(users);
  }

  private install(text: string, policy: Policy | null): void {
    // The new policy was checked against today's users; the engine must resolve it with them.
    this.syncUsers();
    this.engine.setPolicy(policy);
    this.hasPolicy = policy !== null;
    this.text = text;
    this.updatedAt = new Date();
    this.target?.setPolicy(this.hasPolicy ? this.engine : null);
    for (const node of this.deps.state.listNodes()) this.autoApprove(node);
  }

  // ---- file mode ----------------------------------------------------------------------------

  /**
   * Watches the policy file's directory, not the file: editors and config tools replace the
   * file (a new one renamed over it), and a watch on the file itself ends with the old file.
   * Kubernetes volumes swap a `..data` symlink in the directory instead.
   */
  private watch(path: string): void {
    const file = resolve(path);
    try {
      this.watcher = Deno.watchFs(dirname(file), { recursive: false });
    } catch (e) {
      this.deps.log.warn("cannot watch the policy file; reload it with SIGHUP", { path, error: e });
      return;
    }
    (async () => {
      for await (const event of this.watcher!) {
        if (!event.paths.some((p) => p === file || basename(p).startsWith(".."))) continue;
        // Editors write in several steps; reload once things settle.
        clearTimeout(this.reloadTimer);
        this.reloadTimer = setTimeout(() => void this.reloadFile("file changed"), 200);
      }
    })().catch(() => {});
  }

  /** Re-reads policy.path; a bad policy is logged and the old one kept. */
  async reloadFile(reason: string): Promise<boolean> {
    const path = this.deps.config.policy.path;
    try {
      const text = await Deno.readTextFile(path);
      if (text === this.text) return true;
      const policy = this.parse(text, path);
      this.build(policy); // Validates against the tailnet and runs the policy's tests.
      this.install(text, policy);
      this.deps.log.info("policy reloaded", { path, reason });
      return true;
    } catch (e) {
      this.deps.log.error("the new policy was refused; the previous policy stays in force", {
        path,
        reason,
        error: e,
      });
      return false;
    }
  }

  // ---- API ----------------------------------------------------------------------------------

  get(): Promise<{ policy: string; updatedAt: Date | null }> {
    return Promise.resolve({ policy: this.text, updatedAt: this.updatedAt });
  }

  check(text: string): Promise<void> {
    try {
      this.build(this.parse(text, "policy"));
      return Promise.resolve();
    } catch (e) {
      return Promise.reject(e instanceof PolicyError ? new PolicyInvalidError(e.message) : e);
    }
  }

  /**
   * Checks `text` as `set` would (parse, the tailnet, the policy's tests) without adopting it,
   * and hands back an engine for it beside the one in force, over today's tailnet, so a caller
   * can compare what each node may reach (the admin UI's preview). Throws PolicyInvalidError.
   */
  preview(text: string): { before: PolicyEngine; after: PolicyEngine; nodes: PolicyNode[] } {
    let after: PolicyEngine;
    try {
      after = this.build(this.parse(text, "policy"));
    } catch (e) {
      throw e instanceof PolicyError ? new PolicyInvalidError(e.message) : e;
    }
    return { before: this.engine, after, nodes: this.deps.state.listNodes().map(toPolicyNode) };
  }

  async set(text: string): Promise<{ policy: string; updatedAt: Date | null }> {
    if (this.deps.config.policy.mode !== "database") {
      throw new PolicyModeError(
        "the policy can only be set through the API with policy.mode: database",
      );
    }
    let policy: Policy | null;
    try {
      policy = this.parse(text, "policy");
      this.build(policy);
    } catch (e) {
      throw e instanceof PolicyError ? new PolicyInvalidError(e.message) : e;
    }
    await this.deps.store.setPolicy(text);
    this.install(text, policy);
    this.deps.log.info("policy updated through the API");
    return { policy: this.text, updatedAt: this.updatedAt };
  }

  close(): void {
    clearTimeout(this.reloadTimer);
    this.watcher?.close();
    if (this.target) {
      try {
        Deno.removeSignalListener("SIGHUP", this.onSighup);
      } catch { /* not added */ }
    }
  }
}
