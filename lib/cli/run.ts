/**
 * Runs one CLI invocation: parse, connect lazily, run the command, print its result, and turn
 * every failure into one message on stderr with exit status 2 (usage) or 1 (everything else).
 */
import { createClient, type Transport } from "@connectrpc/connect";
import { HeadscaleService } from "../../gen/headscale/v1/headscale_pb.ts";
import { ConfigError, loadConfig } from "../config/load.ts";
import { namesCommand, parseInvocation, usageHint } from "./args.ts";
import type { CliIO, CommandContext, HeadscaleClient, RootEntry } from "./command.ts";
import { COMMANDS } from "./commands/mod.ts";
import { CliError, UsageError } from "./errors.ts";
import {
  chooseStyle,
  formatError,
  type OutputFormat,
  parseOutputFormat,
  serialize,
} from "./output.ts";
import { describeCallError } from "./rpc_errors.ts";
import { type CliTarget, createCliTransport, resolveTarget } from "./transport.ts";

export interface RunOptions {
  commands?: RootEntry[];
  /** Replaces the real transport (tests). */
  transport?: (target: CliTarget, timeoutMs: number) => Transport;
}

/** True when argv is a CLI invocation rather than a server start (see namesCommand). */
export function isCliInvocation(argv: string[]): boolean {
  return namesCommand(argv, COMMANDS);
}

/** -o/--output as written, for formatting errors that happen before parsing succeeds. */
function outputFromArgv(argv: string[]): OutputFormat {
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const inline = /^(?:--output=|-o=?)(.+)$/.exec(a);
    const value = inline ? inline[1] : (a === "-o" || a === "--output") ? argv[i + 1] : undefined;
    if (value !== undefined) {
      try {
        return parseOutputFormat(value);
      } catch {
        return "";
      }
    }
  }
  return "";
}

export async function runCli(argv: string[], io: CliIO, opts: RunOptions = {}): Promise<number> {
  let output = outputFromArgv(argv);
  const fail = (message: string, details: string[] = []) =>
    io.printError(formatError(message, details, output));
  try {
    const invocation = parseInvocation(argv, opts.commands ?? COMMANDS);
    if (invocation.kind === "help") {
      io.print(invocation.text);
      return 0;
    }
    output = invocation.globals.output;
    const { globals } = invocation;

    let client: HeadscaleClient | undefined;
    let target: CliTarget = { kind: "unix", socketPath: "" };
    let timeoutMs = 0;
    const connect = (): HeadscaleClient => {
      if (client) return client;
      let config;
      try {
        config = loadConfig({ path: globals.config, env: io.env }).config;
      } catch (e) {
        if (!(e instanceof ConfigError)) throw e;
        throw new CliError(`loading configuration: ${e.message.split("\n").join("; ")}`);
      }
      target = resolveTarget(config);
      timeoutMs = config.cli.timeoutMs;
      const transport = (opts.transport ?? createCliTransport)(target, timeoutMs);
      client = createClient(HeadscaleService, transport);
      return client;
    };

    const ctx: CommandContext = {
      options: invocation.options,
      positionals: invocation.positionals,
      output,
      style: chooseStyle(io.stdoutIsTerminal && output === "", io.env),
      io,
      configPath: globals.config,
      async call(what, fn) {
        const c = connect();
        try {
          return await fn(c);
        } catch (e) {
          throw new CliError(`${what}: ${describeCallError(e, target, timeoutMs)}`);
        }
      },
      async confirm(question) {
        if (globals.force || !io.stdinIsTerminal) return true;
        const answer = await io.ask(`${question} [y/n] `);
        return ["y", "yes", "sure"].includes((answer ?? "").trim().toLowerCase());
      },
    };

    const result = await invocation.command.run(ctx);
    if (output !== "") io.print(serialize(result.data, output));
    else if (result.human !== "") io.print(result.human);
    return result.exitCode ?? 0;
  } catch (e) {
    if (e instanceof UsageError) {
      fail(e.message);
      if (output === "") io.printError(usageHint(e.path));
      return 2;
    }
    if (e instanceof CliError) {
      fail(e.message, e.details);
      return 1;
    }
    fail(`unexpected failure: ${e instanceof Error ? e.message : String(e)}`);
    return 1;
  }
}

/** The real terminal: Deno's stdio and environment. */
export function denoIO(): CliIO {
  const encoder = new TextEncoder();
  const write = (stream: { writeSync(p: Uint8Array): number }, text: string) => {
    const bytes = encoder.encode(text);
    for (let off = 0; off < bytes.length;) off += stream.writeSync(bytes.subarray(off));
  };
  return {
    print: (text) => write(Deno.stdout, text + "\n"),
    printError: (text) => write(Deno.stderr, text + "\n"),
    async ask(question) {
      write(Deno.stderr, question);
      const decoder = new TextDecoder();
      const buf = new Uint8Array(1);
      let line = "";
      while (true) {
        const n = await Deno.stdin.read(buf);
        if (n === null) return line === "" ? null : line;
        const ch = decoder.decode(buf.subarray(0, n), { stream: true });
        if (ch === "\n") return line.replace(/\r$/, "");
        line += ch;
      }
    },
    stdinIsTerminal: Deno.stdin.isTerminal(),
    stdoutIsTerminal: Deno.stdout.isTerminal(),
    env: Deno.env.toObject(),
    now: () => new Date(),
  };
}
