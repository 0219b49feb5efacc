/**
 * HEADSCALE_DEBUG_DUMP_MAPRESPONSE_PATH (headscale's debug knob): every map response a stream is
 * sent is also written to `<dir>/<node id>/<time>-<seq>-<full|delta>.json`, for finding out what
 * a client was told. Off unless set; synchronous on purpose (debugging only, order preserved).
 */
import type { Logger } from "../log/log.ts";

export class MapResponseDump {
  private seq = 0;
  private failed = false;

  constructor(private readonly dir: string, private readonly log: Logger) {}

  write(nodeId: number, json: string): void {
    if (this.failed) return;
    // A full map is the only response with the whole peer list.
    const kind = json.includes('"Peers":') ? "full" : "delta";
    const stamp = new Date().toISOString().replace(/:/g, "-");
    const seq = String(++this.seq).padStart(7, "0");
    const dir = `${this.dir}/${nodeId}`;
    try {
      Deno.mkdirSync(dir, { recursive: true, mode: 0o700 });
      Deno.writeTextFileSync(`${dir}/${stamp}-${seq}-${kind}.json`, json + "\n", { mode: 0o600 });
    } catch (e) {
      this.failed = true; // One warning, not one per response.
      this.log.warn("cannot dump map responses; dumping stopped", { dir: this.dir, error: e });
    }
  }
}
