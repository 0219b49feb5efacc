/** Routes every headscale server answers outside the control protocol: /health and /key. */
import type { IncomingMessage, ServerResponse } from "node:http";
import { sendJson, sendText } from "./router.ts";

/**
 * `GET /health`: pass while the database takes writes, fail (503) when it does not, with the
 * reason in `output` (e.g. "the SQLite database /var/lib/headscale/db.sqlite is full (…)").
 * `check` commits a one-row write: a database that still answers reads but cannot commit (full
 * disk, read-only file) is not healthy. Concurrent checks share one write.
 */
export function healthHandler(check: () => Promise<void>) {
  let inFlight: Promise<void> | undefined;
  const shared = () => {
    inFlight ??= check().finally(() => inFlight = undefined);
    return inFlight;
  };
  return async (_req: IncomingMessage, res: ServerResponse) => {
    try {
      await shared();
      sendJson(res, 200, { status: "pass" });
    } catch (e) {
      sendJson(res, 503, { status: "fail", output: (e as Error)?.message ?? String(e) });
    }
  };
}

/**
 * `GET /key?v=<capver>`: the server's Noise public key (tailcfg.OverTLSPublicKeyResponse). The
 * legacy key is all zeros, as headscale sends it; clients that are too old are refused here.
 */
export function keyHandler(noisePublicKey: string, minCapVersion: number) {
  const body = {
    legacyPublicKey: "mkey:" + "0".repeat(64),
    publicKey: noisePublicKey,
  };
  return (req: IncomingMessage, res: ServerResponse) => {
    const v = new URL(req.url ?? "/", "http://x").searchParams.get("v");
    if (v === null || !/^\d+$/.test(v)) {
      return sendText(res, 400, "missing or invalid ?v= capability version\n");
    }
    if (Number(v) < minCapVersion) {
      return sendText(
        res,
        400,
        `client capability version ${v} is too old; this server needs ${minCapVersion} (Tailscale v1.80) or newer\n`,
      );
    }
    sendJson(res, 200, body);
  };
}
