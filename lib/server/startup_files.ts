/**
 * Files the configuration names (tls_cert_path, tls_key_path, policy.path,
 * dns.extra_records_path) are read before anything is opened: a missing or broken one stops the
 * start with one line naming the key and the file, e.g.
 * `tls_cert_path: cannot read /x/cert.pem: No such file or directory`.
 */
import type { Config } from "../config/config.ts";
import { parseExtraRecords } from "../dns/extra_records.ts";

/** A configured file that cannot be used; the message names the key and the file. */
export class StartupFileError extends Error {
  override name = "StartupFileError";
}

/** "No such file or directory (os error 2): readfile '/x'" → "No such file or directory" */
function reason(e: unknown): string {
  const message = e instanceof Error ? e.message : String(e);
  return message.replace(/\s*\(os error \d+\).*$/s, "");
}

/** Reads the file configured under `key`; the error names both. */
export async function readConfiguredFile(key: string, path: string): Promise<string> {
  try {
    return await Deno.readTextFile(path);
  } catch (e) {
    throw new StartupFileError(`${key}: cannot read ${path}: ${reason(e)}`);
  }
}

export interface StartupFiles {
  /** PEM certificate chain and key, when tls_cert_path/tls_key_path are set. */
  tls: { cert: string; key: string } | null;
}

/**
 * Reads every file the configuration names. The policy's and the extra records' contents are
 * read again by their owners (which keep watching them); here they only have to be usable.
 */
export async function checkStartupFiles(config: Config): Promise<StartupFiles> {
  const tls = config.tls.certPath !== ""
    ? {
      cert: await readConfiguredFile("tls_cert_path", config.tls.certPath),
      key: await readConfiguredFile("tls_key_path", config.tls.keyPath),
    }
    : null;
  if (config.policy.mode === "file" && config.policy.path !== "") {
    await readConfiguredFile("policy.path", config.policy.path);
  }
  const recordsPath = config.dns.extraRecordsPath;
  if (recordsPath !== "") {
    // At runtime a bad file keeps the last good records; at startup there are none to keep.
    const text = await readConfiguredFile("dns.extra_records_path", recordsPath);
    try {
      parseExtraRecords(text);
    } catch (e) {
      throw new StartupFileError(`dns.extra_records_path: ${recordsPath}: ${reason(e)}`);
    }
  }
  return { tls };
}
