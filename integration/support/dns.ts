/**
 * DNS as a client resolves it: `tailscale dns query` asks the client's own resolver (quad-100,
 * 100.100.100.100), which answers MagicDNS names and extra records itself and forwards the rest
 * as the netmap's DNSConfig says. Its text output is the same in v1.80 and v1.102.
 *
 * ```ts
 * const r = await dnsQuery(alice, "bob.tailnet.internal.");   // { rcode: "RCodeSuccess", answers: [...] }
 * await waitForDnsAnswer(alice, "db.example.test", "A", ["192.0.2.53"]);
 * ```
 */
import { type Harness, StopWaiting, type TailscaleClient, waitFor } from "../harness.ts";
import { ManagedProcess, tailOfFile } from "../harness/command.ts";

export interface DnsAnswer {
  name: string;
  /** e.g. `TypeA`, `TypeAAAA`. */
  type: string;
  body: string;
}

export interface DnsQueryResult {
  /** e.g. `RCodeSuccess`, `RCodeNameError`. */
  rcode: string;
  answers: DnsAnswer[];
  /** The resolvers the client said it forwarded to, as printed. */
  resolvers: string[];
  output: string;
}

/** `tailscale dns query <name> <type>` on `client`, parsed. */
export async function dnsQuery(
  client: TailscaleClient,
  name: string,
  type: "A" | "AAAA" = "A",
): Promise<DnsQueryResult> {
  const output = await client.cliChecked(["dns", "query", name, type], { timeoutMs: 15_000 });
  const rcode = /^Response code: (\S+)$/m.exec(output)?.[1];
  if (!rcode) throw new Error(`${client.name}: dns query ${name}: no response code:\n${output}`);
  const answers: DnsAnswer[] = [];
  for (const m of output.matchAll(/^(\S+)\s+\d+\s+\S+\s+(Type\w+)\s+(\S+)\s*$/gm)) {
    answers.push({ name: m[1], type: m[2], body: m[3] });
  }
  const resolvers: string[] = [];
  const one = /^Forwarding to resolver: (.+)$/m.exec(output)?.[1];
  if (one) resolvers.push(one.trim());
  for (const m of output.matchAll(/^ {2}- (.+)$/gm)) resolvers.push(m[1].trim());
  return { rcode, answers, resolvers, output };
}

/** The answer bodies of type `type`, sorted. */
export function answerBodies(result: DnsQueryResult, type: "A" | "AAAA"): string[] {
  return result.answers.filter((a) => a.type === `Type${type}`).map((a) => a.body).sort();
}

/**
 * Waits until `client` resolves `name` to exactly `expected` (sorted bodies of that type), or,
 * with `expected` null, until it answers NXDOMAIN.
 */
export async function waitForDnsAnswer(
  client: TailscaleClient,
  name: string,
  type: "A" | "AAAA",
  expected: readonly string[] | null,
  timeoutMs = 20_000,
): Promise<DnsQueryResult> {
  const want = expected ? [...expected].sort() : null;
  return await waitFor(
    async () => {
      const result = await dnsQuery(client, name, type);
      if (want === null) {
        if (result.rcode !== "RCodeNameError") {
          throw new Error(`${result.rcode} ${JSON.stringify(answerBodies(result, type))}`);
        }
        return result;
      }
      const got = answerBodies(result, type);
      if (result.rcode !== "RCodeSuccess" || JSON.stringify(got) !== JSON.stringify(want)) {
        throw new Error(`${result.rcode} ${JSON.stringify(got)}`);
      }
      return result;
    },
    timeoutMs,
    {
      description: `${client.name}: ${name} ${type} → ${want ? want.join(", ") : "NXDOMAIN"}`,
      intervalMs: 200,
    },
  );
}

/** A DNS server in a namespace of its own on the bridge (see {@link startDnsServer}). */
export interface DnsServer {
  /** Its address on the bridge (port 53, UDP and TCP). */
  address: string;
  /** The names it was asked for, lower case with the trailing dot, in order. */
  queries(): Promise<string[]>;
}

/**
 * A DNS server every namespace on the bridge reaches at `<address>:53`: it answers every A query
 * with `answer` (and AAAA queries with no records), so an answer tells which server a client's
 * resolver forwarded to. Each query is logged; {@link DnsServer.queries} reads them back. It
 * lives in its own namespace (port 53 on the bridge could be taken on the host) and stops when
 * the harness closes.
 */
export async function startDnsServer(harness: Harness, answer: string): Promise<DnsServer> {
  const ns = await harness.addNamespace();
  const queryLog = `${harness.workDir}/dns-${ns.name}.queries`;
  const script = `
import { createSocket } from "node:dgram";
import { appendFileSync } from "node:fs";
import { Buffer } from "node:buffer";
const answer = ${JSON.stringify(answer)}.split(".").map(Number);
const socket = createSocket("udp4");
socket.on("message", (msg, from) => {
  if (msg.length < 12) return;
  let i = 12;
  const labels = [];
  while (i < msg.length && msg[i] !== 0) {
    labels.push(msg.subarray(i + 1, i + 1 + msg[i]).toString("latin1"));
    i += msg[i] + 1;
  }
  const qtype = msg.readUInt16BE(i + 1);
  const question = msg.subarray(12, i + 5);
  appendFileSync(${JSON.stringify(queryLog)}, labels.join(".").toLowerCase() + ".\\n");
  const header = Buffer.alloc(12);
  msg.copy(header, 0, 0, 2);
  header.writeUInt16BE(0x8180 | (msg.readUInt16BE(2) & 0x0100), 2);
  header.writeUInt16BE(1, 4);
  const records = qtype === 1 ? [Buffer.from([0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, ...answer])] : [];
  header.writeUInt16BE(records.length, 6);
  socket.send(Buffer.concat([header, question, ...records]), from.port, from.address);
});
socket.bind(53, "0.0.0.0", () => console.log("dns server on", ${JSON.stringify(ns.address)}));
`;
  const logPath = `${harness.artifactsDir}/${ns.name}.dns.log`;
  const process = await ManagedProcess.spawn(
    ["ip", "netns", "exec", ns.name, Deno.execPath(), "eval", script],
    { logPath, dieWithParent: harness.dieWithParent },
  );
  harness.onClose(() => process.stop());
  await waitFor(
    async () => {
      if (!process.running) {
        throw new StopWaiting(`the DNS server exited:\n${await tailOfFile(logPath)}`);
      }
      return (await Deno.readTextFile(logPath)).includes("dns server on");
    },
    15_000,
    { description: `DNS server in ${ns.name}`, intervalMs: 100 },
  );
  return {
    address: ns.address,
    queries: async () =>
      (await Deno.readTextFile(queryLog).catch(() => "")).split("\n").filter((l) => l),
  };
}

/** What `tailscale dns status --all` shows (text, the same sections in v1.80 and v1.102). */
export interface DnsStatus {
  magicDnsSuffix: string | null;
  /** "Resolvers (in preference order)". */
  resolvers: string[];
  /** "Split DNS Routes": domain → resolver addresses. */
  splitRoutes: Record<string, string[]>;
  /** "Fallback Resolvers": the resolver addresses. */
  fallbackResolvers: string[];
  searchDomains: string[];
  /** "Additional DNS Records", as `name -> value`. */
  extraRecords: string[];
  output: string;
}

/** `tailscale dns status --all` on `client`, parsed. */
export async function dnsStatus(client: TailscaleClient): Promise<DnsStatus> {
  const output = await client.cliChecked(["dns", "status", "--all"], { timeoutMs: 15_000 });
  const sections = new Map<string, string[]>();
  let current: string[] | undefined;
  for (const line of output.split("\n")) {
    if (/^\S.*:$/.test(line)) {
      current = [];
      sections.set(line.slice(0, -1), current);
    } else if (current && /^ {2}\S/.test(line) && !/^ {2}\(/.test(line)) {
      current.push(line.trim());
    } else if (line.trim() === "") {
      current = undefined;
    }
  }
  const items = (name: string) => (sections.get(name) ?? []).map((l) => l.replace(/^- /, ""));
  const splitRoutes: Record<string, string[]> = {};
  for (const item of items("Split DNS Routes")) {
    const [domain, addr] = item.split(/\s+->\s+/);
    (splitRoutes[domain] ??= []).push(addr);
  }
  return {
    magicDnsSuffix: /MagicDNS: enabled tailnet-wide \(suffix = (\S+)\)/.exec(output)?.[1] ?? null,
    resolvers: items("Resolvers (in preference order)"),
    splitRoutes,
    // v1.80 prints the resolver struct ("0: &{172.31.5.10 []}"), v1.102 its address ("0: …").
    fallbackResolvers: items("Fallback Resolvers").map((l) =>
      /^\d+: (?:&\{)?([^\s}]+)/.exec(l)?.[1] ?? l
    ),
    searchDomains: items("Search Domains"),
    extraRecords: items("Additional DNS Records").map((l) => l.replace(/\s+->\s+/, " -> ")),
    output,
  };
}
