/**
 * The admin UI's audit log: every change made through the UI, every sign-in, sign-out and failed
 * sign-in, with who (the admin's identity), what (action, target, details), when and from where
 * (the client address after trusted_proxies). Details never hold secrets: keys are named by
 * id and prefix only. `audit list` on the CLI reads it.
 */
import type { Logger } from "../log/log.ts";
import type { AuditEventRecord, Store } from "../store/types.ts";

export interface AuditEntry {
  actor: string;
  action: string;
  target?: string;
  details?: Record<string, unknown>;
  clientAddr: string;
}

export class AuditLog {
  readonly #store: Store;
  readonly #log: Logger;
  readonly #now: () => Date;

  constructor(opts: { store: Store; log: Logger; now?: () => Date }) {
    this.#store = opts.store;
    this.#log = opts.log;
    this.#now = opts.now ?? (() => new Date());
  }

  /**
   * Writes one event. A database that refuses it is logged, not thrown: the change it records
   * has already happened, and the admin should see its outcome.
   */
  async record(e: AuditEntry): Promise<AuditEventRecord | null> {
    const event = {
      at: this.#now(),
      actor: e.actor,
      action: e.action,
      target: e.target ?? "",
      details: e.details ?? {},
      clientAddr: e.clientAddr,
    };
    this.#log.info("admin UI", {
      actor: event.actor,
      action: event.action,
      target: event.target,
      from: event.clientAddr,
    });
    try {
      return await this.#store.insertAuditEvent(event);
    } catch (err) {
      this.#log.error("audit log write failed", { action: e.action, error: err });
      return null;
    }
  }

  list(limit: number): Promise<AuditEventRecord[]> {
    return this.#store.listAuditEvents(limit);
  }
}
