/** Node key forms DERP needs: raw 32 bytes on the wire, `nodekey:<hex>` text elsewhere. */
import { Buffer } from "node:buffer";
import { toHex } from "../tailcfg/keys.ts";

const NODEKEY_RE = /^nodekey:([0-9a-f]{64})$/;

export function nodeKeyText(raw: Uint8Array): string {
  return "nodekey:" + toHex(raw);
}

/** Raw bytes of a `nodekey:<64 lowercase hex>` string, or null when malformed. */
export function parseNodeKeyText(text: string): Uint8Array | null {
  const m = NODEKEY_RE.exec(text);
  return m ? new Uint8Array(Buffer.from(m[1], "hex")) : null;
}

/**
 * A cheap map key for 32 raw key bytes (one latin1 char per byte), computed per forwarded
 * packet; never shown to people.
 */
export function keyId(bytes: Uint8Array, start = 0): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset + start, 32).toString("latin1");
}

/** Short form for logs: the first 8 hex digits, as Tailscale's ShortString. */
export function shortKey(raw: Uint8Array): string {
  return "[" + toHex(raw.subarray(0, 4)) + "]";
}
