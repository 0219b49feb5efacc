/**
 * A bounded map whose entries expire `ttlMs` after their `createdAt`: the storage of the
 * auth-request registry (./registry.ts: pending logins, SSH checks, debug nodes; headscale keeps
 * these in a 15-minute cache; they do not survive a restart).
 */

export interface ExpiringMapOptions<V> {
  ttlMs: number;
  /** When full, the oldest entry makes room for a new one. */
  maxEntries: number;
  /** Epoch milliseconds. */
  now: () => number;
  /** Told of an entry that expired or was pushed out (not of delete() or clear()). */
  onDrop?: (key: string, value: V) => void;
}

export class ExpiringMap<V extends { createdAt: number }> {
  readonly #entries = new Map<string, V>();

  constructor(private readonly opts: ExpiringMapOptions<V>) {}

  get ttlMs(): number {
    return this.opts.ttlMs;
  }

  get(key: string): V | undefined {
    this.sweep();
    return this.#entries.get(key);
  }

  has(key: string): boolean {
    return this.get(key) !== undefined;
  }

  /** Adds or replaces `key`. An entry put back with its old createdAt keeps its age. */
  set(key: string, value: V): void {
    this.sweep();
    this.#entries.delete(key);
    while (this.#entries.size >= this.opts.maxEntries) {
      const [oldestKey, oldest] = this.#entries.entries().next().value!;
      this.#drop(oldestKey, oldest);
    }
    this.#entries.set(key, value);
  }

  delete(key: string): boolean {
    return this.#entries.delete(key);
  }

  /** The live entries, oldest first (a copy: callers may delete while they walk it). */
  entries(): [string, V][] {
    this.sweep();
    return [...this.#entries];
  }

  values(): V[] {
    return this.entries().map(([, v]) => v);
  }

  get size(): number {
    this.sweep();
    return this.#entries.size;
  }

  clear(): void {
    this.#entries.clear();
  }

  /** Drops what has expired. A full walk: entries put back out of order expire on time too. */
  sweep(): void {
    const cutoff = this.opts.now() - this.opts.ttlMs;
    for (const [key, value] of [...this.#entries]) {
      if (value.createdAt <= cutoff) this.#drop(key, value);
    }
  }

  #drop(key: string, value: V): void {
    this.#entries.delete(key);
    this.opts.onDrop?.(key, value);
  }
}
