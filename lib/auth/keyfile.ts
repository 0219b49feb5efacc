/**
 * The server's long-lived private keys (Noise, DERP) in files of the form `privkey:<64 hex>`, as
 * headscale keeps them. A missing file is created with a new key, readable by the owner only.
 */
import { dirname } from "node:path";

export class KeyFileError extends Error {
  override name = "KeyFileError";
}

export function parsePrivateKeyText(text: string, path: string): Uint8Array {
  const m = /^privkey:([0-9a-f]{64})$/.exec(text.trim());
  if (!m) throw new KeyFileError(`${path}: not a private key (expected privkey:<64 hex digits>)`);
  return Uint8Array.from(m[1].match(/../g)!.map((h) => parseInt(h, 16)));
}

export function formatPrivateKeyText(key: Uint8Array): string {
  return "privkey:" + Array.from(key, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** Reads the key at `path`, or creates it; returns the 32 raw private key bytes. */
export async function loadOrCreatePrivateKey(path: string): Promise<Uint8Array> {
  try {
    return parsePrivateKeyText(await Deno.readTextFile(path), path);
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  await Deno.mkdir(dirname(path), { recursive: true });
  const key = crypto.getRandomValues(new Uint8Array(32));
  // createNew: if another process won the race, read its key instead of overwriting it.
  try {
    await Deno.writeTextFile(path, formatPrivateKeyText(key) + "\n", {
      createNew: true,
      mode: 0o600,
    });
  } catch (e) {
    if (e instanceof Deno.errors.AlreadyExists) return loadOrCreatePrivateKey(path);
    throw e;
  }
  return key;
}
