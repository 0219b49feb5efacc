/**
 * What a CLI command is: its name, flags and positional arguments (parsed by args.ts) and a run
 * function that gets a CommandContext and returns what to print.
 */
import type { Client } from "@connectrpc/connect";
import type { HeadscaleService } from "../../gen/headscale/v1/headscale_pb.ts";
import type { OutputFormat, Style } from "./output.ts";

export type HeadscaleClient = Client<typeof HeadscaleService>;

/**
 * "id" is a positive integer (sent as uint64), "list" a comma-separated list that may also be
 * repeated (`--tags a,b --tags c`), as cobra's StringSlice reads it.
 */
export type OptionKind = "string" | "boolean" | "id" | "list";

export interface OptionSpec {
  kind: OptionKind;
  short?: string;
  description: string;
  /** Shown in help and used when the flag is absent (string kinds only). */
  default?: string;
  required?: boolean;
}

export type OptionValue = string | boolean | bigint | string[];

/** Parsed flag values by long name; absent flags (without default) are undefined. */
export interface OptionValues {
  string(name: string): string | undefined;
  boolean(name: string): boolean;
  id(name: string): bigint | undefined;
  list(name: string): string[] | undefined;
  has(name: string): boolean;
}

/** What a command produced: `data` for -o json/json-line/yaml, `human` for people. */
export interface CommandResult {
  /** Plain JSON-compatible data (protojson for API messages). */
  data: unknown;
  human: string;
  /** Non-zero when the command ran but the answer is "no" (e.g. health: database down). */
  exitCode?: number;
}

export interface CliIO {
  /** Writes `text` plus a newline to stdout. */
  print(text: string): void;
  /** Writes `text` plus a newline to stderr. */
  printError(text: string): void;
  /** Writes `question` to stderr and reads one line from stdin (null at end of input). */
  ask(question: string): Promise<string | null>;
  stdinIsTerminal: boolean;
  stdoutIsTerminal: boolean;
  env: Record<string, string | undefined>;
  now(): Date;
}

export interface CommandContext {
  options: OptionValues;
  positionals: string[];
  output: OutputFormat;
  style: Style;
  io: CliIO;
  /** -c/--config as given (configtest reads it itself). */
  configPath: string | undefined;
  /**
   * Calls the server: `what` names the action for error messages ("creating user"). Any
   * failure, including not reaching the server, becomes a CliError with one clear message.
   */
  call<T>(what: string, fn: (client: HeadscaleClient) => Promise<T>): Promise<T>;
  /** Asks a yes/no question on a terminal; true without asking under --force or without a TTY. */
  confirm(question: string): Promise<boolean>;
}

export interface CommandSpec {
  name: string;
  aliases?: string[];
  summary: string;
  /** Positional arguments as shown in usage, e.g. "NAME". */
  argsUsage?: string;
  /** How many positional arguments are accepted (default none). */
  args?: { min: number; max: number };
  options?: Record<string, OptionSpec>;
  run(ctx: CommandContext): Promise<CommandResult>;
}

export interface GroupSpec {
  name: string;
  aliases?: string[];
  summary: string;
  commands: CommandSpec[];
}

export type RootEntry = GroupSpec | CommandSpec;

export function isGroup(e: RootEntry): e is GroupSpec {
  return "commands" in e;
}
