/**
 * The Health page's charts: the figures that matter (nodes online, map sessions, changes per
 * minute) read every `intervalMs` into ring buffers holding the last `windowMs`. Created and
 * started by the server (lib/server/server.ts) and passed to the page; the readers are the
 * same numbers /metrics serves, so sampling costs a few reads per interval.
 */

export interface HealthSources {
  nodesOnline(): number;
  mapSessions(): number;
  /** Tailnet changes seen since the start (a counter that only grows). */
  changesTotal(): number;
}

export interface Point {
  /** Milliseconds since the epoch. */
  t: number;
  v: number;
}

/** A fixed-size buffer that keeps the newest `capacity` items. */
export class RingBuffer<T> {
  private readonly items: T[] = [];
  private next = 0;

  constructor(readonly capacity: number) {
    if (!Number.isInteger(capacity) || capacity < 1) throw new RangeError("capacity must be >= 1");
  }

  push(item: T): void {
    if (this.items.length < this.capacity) this.items.push(item);
    else this.items[this.next] = item;
    this.next = (this.next + 1) % this.capacity;
  }

  get length(): number {
    return this.items.length;
  }

  /** Oldest first. */
  toArray(): T[] {
    if (this.items.length < this.capacity) return this.items.slice();
    return [...this.items.slice(this.next), ...this.items.slice(0, this.next)];
  }
}

export interface HealthSeries {
  nodesOnline: Point[];
  mapSessions: Point[];
  changesPerMinute: Point[];
  intervalMs: number;
  windowMs: number;
}

export interface HealthSamplerOptions {
  /** Default 10 s. */
  intervalMs?: number;
  /** How much history to keep; default one hour. */
  windowMs?: number;
  now?: () => number;
}

export class HealthSampler {
  readonly intervalMs: number;
  readonly windowMs: number;
  private readonly now: () => number;
  private readonly online: RingBuffer<Point>;
  private readonly sessions: RingBuffer<Point>;
  private readonly changeRate: RingBuffer<Point>;
  private last: { t: number; changes: number } | null = null;
  private timer: ReturnType<typeof setInterval> | undefined;

  constructor(private readonly sources: HealthSources, options: HealthSamplerOptions = {}) {
    this.intervalMs = options.intervalMs ?? 10_000;
    this.windowMs = options.windowMs ?? 3_600_000;
    this.now = options.now ?? Date.now;
    const capacity = Math.max(1, Math.ceil(this.windowMs / this.intervalMs));
    this.online = new RingBuffer(capacity);
    this.sessions = new RingBuffer(capacity);
    this.changeRate = new RingBuffer(capacity);
  }

  /** Takes a sample now and then every interval (the timer does not keep the process alive). */
  start(): void {
    if (this.timer !== undefined) return;
    this.sample();
    this.timer = setInterval(() => this.sample(), this.intervalMs);
    Deno.unrefTimer(this.timer);
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  sample(): void {
    const t = this.now();
    this.online.push({ t, v: this.sources.nodesOnline() });
    this.sessions.push({ t, v: this.sources.mapSessions() });
    const changes = this.sources.changesTotal();
    // A rate needs two readings; the first sample only sets the baseline.
    if (this.last && t > this.last.t) {
      const perMinute = (changes - this.last.changes) * 60_000 / (t - this.last.t);
      this.changeRate.push({ t, v: Math.round(perMinute * 10) / 10 });
    }
    this.last = { t, changes };
  }

  series(): HealthSeries {
    return {
      nodesOnline: this.online.toArray(),
      mapSessions: this.sessions.toArray(),
      changesPerMinute: this.changeRate.toArray(),
      intervalMs: this.intervalMs,
      windowMs: this.windowMs,
    };
  }
}
