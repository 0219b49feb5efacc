/**
 * Command-line parsing: finds the command (`users create`, `pre ls`, `health`) by name or alias,
 * then parses its flags plus the global ones with node:util parseArgs in strict mode, so unknown
 * flags, missing values and wrong argument counts are UsageErrors (exit 2). Also renders help.
 */
import { parseArgs } from "node:util";
import {
  type CommandSpec,
  type GroupSpec,
  isGroup,
  type OptionSpec,
  type OptionValue,
  type OptionValues,
  type RootEntry,
} from "./command.ts";
import { UsageError } from "./errors.ts";
import { type OutputFormat, parseOutputFormat } from "./output.ts";

export const PROGRAM = "headscale-deno";

/** Flags every command accepts, as headscale's persistent flags. */
export const GLOBAL_OPTIONS: Record<string, OptionSpec> = {
  config: {
    kind: "string",
    short: "c",
    description: "config file (default: /etc/headscale/config.yaml, then ~/.headscale, then ./)",
  },
  output: {
    kind: "string",
    short: "o",
    description: "output format: json, json-line or yaml (default: human-readable)",
  },
  force: { kind: "boolean", description: "disable prompts and force the execution" },
  help: { kind: "boolean", short: "h", description: "show help" },
};

export interface GlobalValues {
  config: string | undefined;
  output: OutputFormat;
  force: boolean;
}

export type Invocation =
  | { kind: "help"; text: string }
  | {
    kind: "run";
    command: CommandSpec;
    /** Canonical names, e.g. ["users", "create"]. */
    path: string[];
    options: OptionValues;
    positionals: string[];
    globals: GlobalValues;
  };

function matches(entry: { name: string; aliases?: string[] }, word: string): boolean {
  return entry.name === word || (entry.aliases ?? []).includes(word);
}

/** Global flags that take a value in the next token (so that value is not a command word). */
const GLOBAL_VALUE_TOKENS = new Set(
  Object.entries(GLOBAL_OPTIONS).filter(([, o]) => o.kind !== "boolean").flatMap((
    [name, o],
  ) => [`--${name}`, ...(o.short ? [`-${o.short}`] : [])]),
);

/** Positions of the leading command words (group, verb), skipping global flags and their values. */
function commandWords(argv: string[], limit: number): number[] {
  const found: number[] = [];
  for (let i = 0; i < argv.length && found.length < limit; i++) {
    const token = argv[i];
    if (token === "--") break;
    if (token.startsWith("-") && token !== "-") {
      if (GLOBAL_VALUE_TOKENS.has(token)) i++;
      continue;
    }
    found.push(i);
  }
  return found;
}

/**
 * True when argv names a CLI command ("users", "pre", "help", …), so that a single binary can
 * run the server for `serve` (or no command) and the CLI for everything else.
 */
export function namesCommand(argv: string[], root: RootEntry[]): boolean {
  const [index] = commandWords(argv, 1);
  if (index === undefined) return false;
  const word = argv[index];
  return word === "help" || root.some((e) => matches(e, word));
}

/** Parses argv against the command tree; throws UsageError for anything malformed. */
export function parseInvocation(argv: string[], root: RootEntry[]): Invocation {
  const [first] = commandWords(argv, 1);
  const wantsHelp = argv.some((a) => a === "-h" || a === "--help");
  if (first === undefined) {
    if (wantsHelp || argv.length === 0) return { kind: "help", text: rootHelp(root) };
    parseFlags(argv, {}, []); // Reports the unknown/malformed flag.
    return { kind: "help", text: rootHelp(root) };
  }
  const word = argv[first];
  if (word === "help") return { kind: "help", text: helpFor(argv.slice(first + 1), root) };
  const entry = root.find((e) => matches(e, word));
  if (!entry) throw new UsageError(`unknown command "${word}"`);

  let command: CommandSpec;
  let path: string[];
  let used: number[];
  if (isGroup(entry)) {
    const words = commandWords(argv, 2);
    const second = words[1];
    if (second === undefined) return { kind: "help", text: groupHelp(entry) };
    const found = entry.commands.find((c) => matches(c, argv[second]));
    if (!found) {
      throw new UsageError(`unknown command "${argv[second]}" for "${entry.name}"`, [entry.name]);
    }
    command = found;
    path = [entry.name, found.name];
    used = [first, second];
  } else {
    command = entry;
    path = [entry.name];
    used = [first];
  }
  if (wantsHelp) return { kind: "help", text: commandHelp(command, path) };

  const rest = argv.filter((_, i) => !used.includes(i));
  const { values, positionals } = parseFlags(rest, command.options ?? {}, path);
  const { min, max } = command.args ?? { min: 0, max: 0 };
  if (positionals.length < min) {
    throw new UsageError(`missing argument ${command.argsUsage ?? ""}`.trim(), path);
  }
  if (positionals.length > max) {
    throw new UsageError(`unexpected argument "${positionals[max]}"`, path);
  }
  for (const [name, spec] of Object.entries(command.options ?? {})) {
    if (spec.required && values.get(name) === undefined) {
      throw new UsageError(`required flag --${name} is missing`, path);
    }
  }
  const output = values.get("output") as string | undefined;
  let format: OutputFormat;
  try {
    format = parseOutputFormat(output);
  } catch (e) {
    throw new UsageError((e as Error).message, path);
  }
  return {
    kind: "run",
    command,
    path,
    options: optionValues(values),
    positionals,
    globals: {
      config: values.get("config") as string | undefined,
      output: format,
      force: values.get("force") === true,
    },
  };
}

function parseFlags(
  args: string[],
  commandOptions: Record<string, OptionSpec>,
  path: string[],
): { values: Map<string, OptionValue>; positionals: string[] } {
  const all = { ...GLOBAL_OPTIONS, ...commandOptions };
  const config: Record<
    string,
    { type: "string" | "boolean"; short?: string; multiple?: boolean }
  > = {};
  for (const [name, spec] of Object.entries(all)) {
    config[name] = {
      type: spec.kind === "boolean" ? "boolean" : "string",
      ...(spec.short ? { short: spec.short } : {}),
      ...(spec.kind === "list" ? { multiple: true } : {}),
    };
  }
  let parsed;
  try {
    parsed = parseArgs({ args, options: config, strict: true, allowPositionals: true });
  } catch (e) {
    throw new UsageError(flagErrorMessage(e as Error & { code?: string }), path);
  }
  const values = new Map<string, OptionValue>();
  for (const [name, spec] of Object.entries(all)) {
    const raw = (parsed.values as Record<string, string | boolean | string[] | undefined>)[name];
    const value = raw ?? spec.default;
    if (value === undefined) continue;
    values.set(name, convert(name, spec, value, path));
  }
  return { values, positionals: parsed.positionals };
}

function convert(
  name: string,
  spec: OptionSpec,
  value: string | boolean | string[],
  path: string[],
): OptionValue {
  switch (spec.kind) {
    case "boolean":
    case "string":
      return value;
    case "list":
      return [value].flat().flatMap((v) => String(v).split(",")).map((v) => v.trim())
        .filter((v) => v !== "");
    case "id": {
      const text = String(value).trim();
      if (!/^\d{1,20}$/.test(text) || BigInt(text) === 0n || BigInt(text) >= 2n ** 64n) {
        throw new UsageError(
          `flag --${name} must be a positive whole number, got "${value}"`,
          path,
        );
      }
      return BigInt(text);
    }
  }
}

/** parseArgs' messages, shortened to the flag and what is wrong with it. */
function flagErrorMessage(e: Error & { code?: string }): string {
  const flag = /'(-[^' ,]+)(?:, (--[^' ]+))?/.exec(e.message);
  const name = flag ? flag[2] ?? flag[1] : "";
  if (e.code === "ERR_PARSE_ARGS_UNKNOWN_OPTION" && name) return `unknown flag ${name}`;
  if (e.code === "ERR_PARSE_ARGS_INVALID_OPTION_VALUE" && name) {
    if (/does not take an argument/.test(e.message)) return `flag ${name} does not take a value`;
    if (/ambiguous/.test(e.message)) {
      return `flag ${name} needs a value (write ${name}=-X for a value starting with "-")`;
    }
    return `flag ${name} needs a value`;
  }
  return e.message.split("\n")[0];
}

function optionValues(values: Map<string, OptionValue>): OptionValues {
  return {
    string: (name) => {
      const v = values.get(name);
      return typeof v === "string" ? v : undefined;
    },
    boolean: (name) => values.get(name) === true,
    id: (name) => {
      const v = values.get(name);
      return typeof v === "bigint" ? v : undefined;
    },
    list: (name) => {
      const v = values.get(name);
      return Array.isArray(v) ? v : undefined;
    },
    has: (name) => values.has(name),
  };
}

// ---- help

function flagLines(options: Record<string, OptionSpec>): string[] {
  const rows = Object.entries(options).map(([name, o]) => {
    const value = o.kind === "boolean" ? "" : o.kind === "list" ? " strings" : ` ${o.kind}`;
    const left = `${o.short ? `-${o.short}, ` : "    "}--${name}${value}`;
    const notes = [
      o.required ? "required" : "",
      o.default !== undefined ? `default "${o.default}"` : "",
    ].filter(Boolean);
    return [left, o.description + (notes.length ? ` (${notes.join(", ")})` : "")];
  });
  const width = Math.max(0, ...rows.map(([l]) => l.length));
  return rows.map(([l, r]) => `  ${l.padEnd(width)}   ${r}`);
}

function entryLines(entries: { name: string; summary: string; aliases?: string[] }[]): string[] {
  const width = Math.max(0, ...entries.map((e) => e.name.length));
  return entries.map((e) =>
    `  ${e.name.padEnd(width)}   ${e.summary}` +
    (e.aliases?.length ? ` (aliases: ${e.aliases.join(", ")})` : "")
  );
}

export function rootHelp(root: RootEntry[]): string {
  return [
    `${PROGRAM}: manage a headscale-deno server (users, nodes, keys, policy)`,
    "",
    `Usage: ${PROGRAM} <command> [subcommand] [flags]`,
    "",
    "Commands:",
    ...entryLines(root),
    "",
    "Global flags:",
    ...flagLines(GLOBAL_OPTIONS),
    "",
    `Run "${PROGRAM} <command> --help" for more about a command.`,
  ].join("\n");
}

export function groupHelp(group: GroupSpec): string {
  return [
    group.summary,
    "",
    `Usage: ${PROGRAM} ${group.name} <subcommand> [flags]`,
    ...(group.aliases?.length ? ["", `Aliases: ${group.aliases.join(", ")}`] : []),
    "",
    "Subcommands:",
    ...entryLines(group.commands),
    "",
    "Global flags:",
    ...flagLines(GLOBAL_OPTIONS),
  ].join("\n");
}

export function commandHelp(command: CommandSpec, path: string[]): string {
  const options = command.options ?? {};
  return [
    command.summary,
    "",
    `Usage: ${PROGRAM} ${path.join(" ")}${command.argsUsage ? ` ${command.argsUsage}` : ""}` +
    " [flags]",
    ...(command.aliases?.length ? ["", `Aliases: ${command.aliases.join(", ")}`] : []),
    ...(Object.keys(options).length ? ["", "Flags:", ...flagLines(options)] : []),
    "",
    "Global flags:",
    ...flagLines(GLOBAL_OPTIONS),
  ].join("\n");
}

/** Help for `help [group [verb]]`; unknown names fall back to the overview. */
export function helpFor(words: string[], root: RootEntry[]): string {
  const entry = words[0] === undefined ? undefined : root.find((e) => matches(e, words[0]));
  if (!entry) return rootHelp(root);
  if (!isGroup(entry)) return commandHelp(entry, [entry.name]);
  const command = words[1] === undefined
    ? undefined
    : entry.commands.find((c) => matches(c, words[1]));
  return command ? commandHelp(command, [entry.name, command.name]) : groupHelp(entry);
}

/** The hint printed under a usage error. */
export function usageHint(path: string[]): string {
  return `Run "${[PROGRAM, ...path].join(" ")} --help" for usage.`;
}
