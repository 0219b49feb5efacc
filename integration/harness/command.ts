/**
 * Running external programs for the integration harness: one-shot commands with a timeout and
 * captured output, and long-running processes whose output goes to a log file.
 */

/** Outcome of a finished one-shot command. */
export interface CommandResult {
  /** Exit code (`-1` when killed by a signal). */
  code: number;
  success: boolean;
  stdout: string;
  stderr: string;
  /** The command ran past its timeout and was killed. */
  timedOut: boolean;
}

export interface RunOptions {
  env?: Record<string, string>;
  cwd?: string;
  /** Kill the command (SIGKILL) after this long. Default 30 s. */
  timeoutMs?: number;
  /** Text fed to the command's stdin. */
  stdin?: string;
  /** Strings (secrets) replaced by `<redacted>` wherever the command line is shown. */
  redact?: string[];
}

const DEFAULT_TIMEOUT_MS = 30_000;

/** Thrown by {@link runChecked} when a command fails; the message never contains redacted secrets. */
export class CommandError extends Error {
  constructor(readonly commandLine: string, readonly result: CommandResult) {
    const why = result.timedOut ? "timed out" : `exited with code ${result.code}`;
    const output = [result.stderr.trim(), result.stdout.trim()].filter((s) => s).join("\n");
    super(`${commandLine} ${why}${output ? `:\n${output}` : ""}`);
    this.name = "CommandError";
  }
}

/** The command line as a shell-like string, with secrets replaced. */
export function displayCommand(argv: readonly string[], redact: readonly string[] = []): string {
  return argv.map((arg) => {
    let shown = arg;
    for (const secret of redact) {
      if (secret) shown = shown.replaceAll(secret, "<redacted>");
    }
    return /^[\w@%+=:,./-]+$/.test(shown) ? shown : `'${shown.replaceAll("'", `'\\''`)}'`;
  }).join(" ");
}

/** Runs `argv` to completion and returns its output, whatever its exit code. */
export async function runCommand(
  argv: readonly string[],
  options: RunOptions = {},
): Promise<CommandResult> {
  const [program, ...args] = argv;
  if (!program) throw new Error("runCommand: empty command line");
  const child = new Deno.Command(program, {
    args,
    env: options.env,
    cwd: options.cwd,
    stdin: options.stdin === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    killQuietly(child, "SIGKILL");
  }, options.timeoutMs ?? DEFAULT_TIMEOUT_MS);
  try {
    if (options.stdin !== undefined) {
      const writer = child.stdin.getWriter();
      await writer.write(new TextEncoder().encode(options.stdin)).catch(() => {});
      await writer.close().catch(() => {});
    }
    const output = await child.output();
    return {
      code: output.signal ? -1 : output.code,
      success: output.success && !timedOut,
      stdout: new TextDecoder().decode(output.stdout),
      stderr: new TextDecoder().decode(output.stderr),
      timedOut,
    };
  } finally {
    clearTimeout(timer);
  }
}

/** Runs `argv` and returns its stdout; throws {@link CommandError} unless it exits with 0. */
export async function runChecked(
  argv: readonly string[],
  options: RunOptions = {},
): Promise<string> {
  const result = await runCommand(argv, options);
  if (!result.success) throw new CommandError(displayCommand(argv, options.redact), result);
  return result.stdout;
}

export interface SpawnOptions {
  env?: Record<string, string>;
  cwd?: string;
  /** File that receives the process's stdout and stderr (appended). */
  logPath: string;
  /**
   * Run the child under `setpriv --pdeathsig KILL` so it dies with the test process (see
   * {@link canDieWithParent}).
   */
  dieWithParent?: boolean;
}

/**
 * A long-running child process (server, tailscaled) whose stdout and stderr are appended to a log
 * file. With `dieWithParent` the child gets SIGKILL when the test process dies, so a crashed test
 * run leaves no daemons behind.
 */
export class ManagedProcess {
  readonly #child: Deno.ChildProcess;
  readonly #pumps: Promise<unknown>;
  #status: Deno.CommandStatus | undefined;
  readonly exited: Promise<Deno.CommandStatus>;

  private constructor(
    readonly commandLine: string,
    readonly logPath: string,
    child: Deno.ChildProcess,
    pumps: Promise<unknown>,
  ) {
    this.#child = child;
    this.#pumps = pumps;
    this.exited = child.status.then((status) => (this.#status = status));
  }

  static async spawn(
    argv: readonly string[],
    options: SpawnOptions & { redact?: string[] },
  ): Promise<ManagedProcess> {
    const wrapped = options.dieWithParent
      ? ["setpriv", "--pdeathsig", "KILL", "--", ...argv]
      : argv;
    const [program, ...args] = wrapped;
    const commandLine = displayCommand(argv, options.redact);
    const log = await Deno.open(options.logPath, { create: true, append: true });
    await log.write(new TextEncoder().encode(`# ${new Date().toISOString()} ${commandLine}\n`));
    log.close();
    const child = new Deno.Command(program, {
      args,
      env: options.env,
      cwd: options.cwd,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    // Write each chunk as it comes (pipeTo to a file held everything back until the child
    // exited here, so logs were not readable while a test ran).
    const pump = async (stream: ReadableStream<Uint8Array>) => {
      const file = await Deno.open(options.logPath, { append: true });
      try {
        for await (const chunk of stream) await file.write(chunk);
      } catch {
        // The child went away; what was written stays.
      } finally {
        file.close();
      }
    };
    const pumps = Promise.all([pump(child.stdout), pump(child.stderr)]);
    return new ManagedProcess(commandLine, options.logPath, child, pumps);
  }

  get pid(): number {
    return this.#child.pid;
  }

  /** Exit status once the process has ended, otherwise undefined. */
  get status(): Deno.CommandStatus | undefined {
    return this.#status;
  }

  get running(): boolean {
    return this.#status === undefined;
  }

  /** Sends `signal`; no-op once the process has exited. */
  kill(signal: Deno.Signal = "SIGTERM"): void {
    if (this.running) killQuietly(this.#child, signal);
  }

  /** SIGTERM, then SIGKILL after `graceMs`; resolves when the process and its log pumps are done. */
  async stop(graceMs = 5_000): Promise<Deno.CommandStatus> {
    this.kill("SIGTERM");
    const timer = setTimeout(() => this.kill("SIGKILL"), graceMs);
    try {
      const status = await this.exited;
      await this.#pumps;
      return status;
    } finally {
      clearTimeout(timer);
    }
  }
}

/** The last `maxLines` lines of a log file ("" if it cannot be read). */
export async function tailOfFile(path: string, maxLines = 40): Promise<string> {
  try {
    const text = await Deno.readTextFile(path);
    return text.trimEnd().split("\n").slice(-maxLines).join("\n");
  } catch {
    return "";
  }
}

/** Whether util-linux `setpriv` with `--pdeathsig` is available on this machine. */
export async function canDieWithParent(): Promise<boolean> {
  try {
    const result = await runCommand(["setpriv", "--help"], { timeoutMs: 5_000 });
    return result.success && result.stdout.includes("--pdeathsig");
  } catch {
    return false;
  }
}

function killQuietly(child: Deno.ChildProcess, signal: Deno.Signal): void {
  try {
    child.kill(signal);
  } catch {
    // Already exited.
  }
}
