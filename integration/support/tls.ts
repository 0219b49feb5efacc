/**
 * Throwaway TLS material for integration runs: a private CA and server certificates it signs,
 * made with the openssl CLI into a directory of the run (never kept; the keys are worthless once
 * the run ends). Clients trust the CA through `SSL_CERT_FILE` (Go on Linux reads it instead of
 * the system bundle), Deno through `Deno.createHttpClient({ caCerts })`, node:tls through `ca`.
 *
 * ```ts
 * const ca = await createTestCa(`${h.workDir}/tls`);
 * const cert = await issueServerCertificate(ca, { ipAddresses: [h.bridgeAddress] });
 * // tls_cert_path: cert.certPath, tls_key_path: cert.keyPath; clients: SSL_CERT_FILE=ca.certPath
 * ```
 */
import { runChecked } from "../harness/command.ts";

export interface TestCa {
  /** The directory holding the CA's and its certificates' files. */
  dir: string;
  /** PEM certificate of the CA: what clients trust. */
  certPath: string;
  /** The CA's private key (PEM). */
  keyPath: string;
  /** The CA certificate's PEM text. */
  certPem: string;
}

export interface ServerCertificate {
  /** PEM certificate (leaf only; the CA is what clients trust). */
  certPath: string;
  /** PEM private key. */
  keyPath: string;
  certPem: string;
  keyPem: string;
}

export interface ServerCertificateOptions {
  /** IP subject alternative names, e.g. the test bridge's address. */
  ipAddresses?: readonly string[];
  /** DNS subject alternative names. */
  dnsNames?: readonly string[];
  /** File name stem inside the CA's directory. Default `server`. */
  name?: string;
  /** Validity in days. Default 2. */
  days?: number;
}

const OPENSSL_TIMEOUT_MS = 30_000;

function openssl(args: readonly string[], cwd: string): Promise<string> {
  return runChecked(["openssl", ...args], { cwd, timeoutMs: OPENSSL_TIMEOUT_MS });
}

/** Whether the openssl CLI is there (the integration tests that need TLS skip without it). */
export async function opensslAvailable(): Promise<boolean> {
  try {
    await runChecked(["openssl", "version"], { timeoutMs: 10_000 });
    return true;
  } catch {
    return false;
  }
}

/**
 * A fresh CA (P-256 key, self-signed, CA:TRUE, keyCertSign) in `dir` (created if missing),
 * valid for `days` (default 2).
 */
export async function createTestCa(dir: string, days = 2): Promise<TestCa> {
  await Deno.mkdir(dir, { recursive: true, mode: 0o700 });
  const certPath = `${dir}/ca.crt`;
  const keyPath = `${dir}/ca.key`;
  await openssl([
    "req",
    "-x509",
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:P-256",
    "-nodes",
    "-keyout",
    keyPath,
    "-out",
    certPath,
    "-days",
    String(days),
    "-subj",
    `/CN=headscale-deno integration CA ${crypto.randomUUID().slice(0, 8)}`,
    "-addext",
    "basicConstraints=critical,CA:TRUE",
    "-addext",
    "keyUsage=critical,keyCertSign,cRLSign",
  ], dir);
  return { dir, certPath, keyPath, certPem: await Deno.readTextFile(certPath) };
}

/**
 * A server certificate signed by `ca` for the given IP addresses and DNS names (at least one),
 * with serverAuth usage, written next to the CA.
 */
export async function issueServerCertificate(
  ca: TestCa,
  options: ServerCertificateOptions,
): Promise<ServerCertificate> {
  const ips = options.ipAddresses ?? [];
  const names = options.dnsNames ?? [];
  if (ips.length + names.length === 0) {
    throw new Error("issueServerCertificate: give at least one IP address or DNS name");
  }
  for (const ip of ips) {
    if (!/^[0-9a-fA-F.:]+$/.test(ip)) throw new Error(`not an IP address: ${ip}`);
  }
  for (const name of names) {
    if (!/^[A-Za-z0-9.*-]+$/.test(name)) throw new Error(`not a DNS name: ${name}`);
  }
  const stem = options.name ?? "server";
  if (!/^[a-z0-9-]+$/.test(stem)) throw new Error(`bad certificate name ${stem}`);
  const keyPath = `${ca.dir}/${stem}.key`;
  const csrPath = `${ca.dir}/${stem}.csr`;
  const certPath = `${ca.dir}/${stem}.crt`;
  const extPath = `${ca.dir}/${stem}.ext`;
  const san = [...ips.map((ip) => `IP:${ip}`), ...names.map((n) => `DNS:${n}`)].join(",");
  await Deno.writeTextFile(
    extPath,
    [
      "basicConstraints=critical,CA:FALSE",
      "keyUsage=critical,digitalSignature",
      "extendedKeyUsage=serverAuth",
      `subjectAltName=${san}`,
    ].join("\n") + "\n",
  );
  await openssl([
    "req",
    "-new",
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:P-256",
    "-nodes",
    "-keyout",
    keyPath,
    "-out",
    csrPath,
    "-subj",
    `/CN=${names[0] ?? ips[0]}`,
  ], ca.dir);
  await openssl([
    "x509",
    "-req",
    "-in",
    csrPath,
    "-CA",
    ca.certPath,
    "-CAkey",
    ca.keyPath,
    "-set_serial",
    `0x${crypto.randomUUID().replaceAll("-", "").slice(0, 16)}`,
    "-days",
    String(options.days ?? 2),
    "-sha256",
    "-extfile",
    extPath,
    "-out",
    certPath,
  ], ca.dir);
  await Deno.remove(csrPath).catch(() => {});
  return {
    certPath,
    keyPath,
    certPem: await Deno.readTextFile(certPath),
    keyPem: await Deno.readTextFile(keyPath),
  };
}
