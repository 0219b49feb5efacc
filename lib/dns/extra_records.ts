/**
 * `dns.extra_records_path`: a JSON file `[{"name": "...", "type": "A", "value": "100.64.0.9"}]`
 * that is re-read when it changes (headscale watches it the same way), so records can be added
 * without a restart. A file that cannot be read or parsed keeps the last good records and is
 * logged; it never takes the server down.
 */
import { readFile } from "node:fs/promises";
import type { DnsExtraRecord } from "../config/config.ts";
import type { Logger } from "../log/log.ts";

/** Parses the file's text; throws an Error naming the first bad entry. */
export function parseExtraRecords(text: string): DnsExtraRecord[] {
  const value: unknown = JSON.parse(text);
  if (!Array.isArray(value)) throw new Error("expected a JSON array of records");
  return value.map((r, i) => {
    if (r === null || typeof r !== "object") throw new Error(`record ${i} is not an object`);
    const { name, type, value: v } = r as Record<string, unknown>;
    if (typeof name !== "string" || name === "" || typeof v !== "string") {
      throw new Error(`record ${i} needs a name and a value`);
    }
    if (type !== undefined && typeof type !== "string") {
      throw new Error(`record ${i}: type must be a string`);
    }
    return { name, type: type ?? "", value: v };
  });
}

const MISSING = "\0missing";

export interface ExtraRecordsWatcherDeps {
  path: string;
  log: Logger;
  /** Called after the records changed (announce dns-changed). */
  onChange: () => void;
  /** How often the file's modification time is checked. */
  pollMs?: number;
}

/** Polls the file (small; works on every filesystem, unlike inotify on bind mounts). */
export class ExtraRecordsWatcher {
  private records: DnsExtraRecord[] = [];
  private lastText: string | null = null;
  private lastBadText: string | null = null;
  private timer: ReturnType<typeof setInterval> | undefined;
  private checking = false;

  constructor(private readonly deps: ExtraRecordsWatcherDeps) {}

  /** Reads the file once (before the first map is served), then watches it. */
  async start(): Promise<void> {
    await this.check();
    this.timer = setInterval(() => void this.check(), this.deps.pollMs ?? 2_000);
  }

  current(): readonly DnsExtraRecord[] {
    return this.records;
  }

  /** Re-reads the file if it changed; returns true when the records changed. */
  async check(): Promise<boolean> {
    if (this.checking) return false;
    this.checking = true;
    try {
      const text = await readFile(this.deps.path, "utf8");
      if (text === this.lastText || text === this.lastBadText) return false;
      let records: DnsExtraRecord[];
      try {
        records = parseExtraRecords(text);
      } catch (e) {
        this.lastBadText = text; // Warn once per bad version, not every poll.
        throw e;
      }
      this.lastText = text;
      this.records = records;
      this.deps.log.info("dns extra records loaded", {
        path: this.deps.path,
        records: records.length,
      });
      this.deps.onChange();
      return true;
    } catch (e) {
      const missing = (e as { code?: string }).code === "ENOENT";
      if (missing && this.lastBadText === MISSING) return false;
      if (missing) this.lastBadText = MISSING;
      this.deps.log.warn("dns extra records not loaded; keeping the previous ones", {
        path: this.deps.path,
        error: e,
      });
      return false;
    } finally {
      this.checking = false;
    }
  }

  close(): void {
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
  }
}
