/**
 * Tells the notifier when node keys expire, so peers get the node again with Expired set and
 * the node itself learns its key is dead. One timer for the next expiry, not a periodic scan:
 * the node list is read only when that timer fires or when an earlier expiry appears.
 */
import type { NodeRecord } from "../store/types.ts";

/** setTimeout's limit (~24.8 days); a longer wait is done in steps. */
const MAX_DELAY_MS = 2 ** 31 - 1;

export interface ExpiryWatchDeps {
  listNodes(): Iterable<NodeRecord>;
  onExpired(nodeIds: number[]): void;
  now?: () => Date;
}

export class ExpiryWatch {
  private timer: ReturnType<typeof setTimeout> | undefined;
  /** When the timer fires (ms since epoch), or Infinity when none is set. */
  private due = Infinity;
  /** Expiries at or before this time were already reported. */
  private checkedUntil: number;
  private closed = false;
  private readonly now: () => Date;

  constructor(private readonly deps: ExpiryWatchDeps) {
    this.now = deps.now ?? (() => new Date());
    this.checkedUntil = this.now().getTime();
    this.rescan();
  }

  /** A node's expiry may have changed: wake up earlier if it now expires first. */
  noteExpiry(expiry: Date | null): void {
    if (this.closed || expiry === null) return;
    const t = expiry.getTime();
    if (t > this.checkedUntil && t < this.due) this.schedule(t);
  }

  private schedule(at: number): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.due = at;
    const delay = Math.min(Math.max(0, at - this.now().getTime()), MAX_DELAY_MS);
    this.timer = setTimeout(() => this.fire(), delay);
  }

  private fire(): void {
    this.timer = undefined;
    this.due = Infinity;
    const now = this.now().getTime();
    const expired: number[] = [];
    for (const n of this.deps.listNodes()) {
      const t = n.expiry?.getTime();
      if (t !== undefined && t > this.checkedUntil && t <= now) expired.push(n.id);
    }
    this.checkedUntil = now;
    if (expired.length > 0) this.deps.onExpired(expired);
    this.rescan();
  }

  /** Finds the next expiry after the checked time and sets the timer for it. */
  private rescan(): void {
    if (this.closed) return;
    let next = Infinity;
    for (const n of this.deps.listNodes()) {
      const t = n.expiry?.getTime();
      if (t !== undefined && t > this.checkedUntil && t < next) next = t;
    }
    if (next !== Infinity) this.schedule(next);
  }

  close(): void {
    this.closed = true;
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
  }
}
