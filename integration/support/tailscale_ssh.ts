/**
 * OpenSSH's `ssh` from one tailnet node to another node's Tailscale SSH server, for tests of the
 * policy's `ssh` section with real clients.
 *
 * `ssh` runs inside the source node's namespace and reaches the destination through the source's
 * own tailscaled (`ProxyCommand tailscale --socket=… nc %h %p`), so the connection is a tailnet
 * connection from the source node's Tailscale IP. Tailscale SSH authenticates by that identity:
 * no keys, no passwords (`BatchMode=yes`). Auth banners (denials, the check-mode message) go to
 * stderr as they arrive; {@link SshRun.waitForStderr} reads them while the session is held.
 *
 * ```ts
 * const run = startSsh(a, bIp, "echo hello", { dieWithParent: h.dieWithParent });
 * const result = await run.done; // { code: 0, stdout: "hello\n", … }
 * ```
 */
import type { CommandResult, TailscaleClient } from "../harness.ts";
import { waitFor } from "../harness.ts";
import { StopWaiting } from "../harness/wait.ts";

export interface SshOptions {
  /** The login user asked for (`user@host`). Default `root`. */
  user?: string;
  /** Kill `ssh` (SIGKILL) after this long. Default 30 s. */
  timeoutMs?: number;
  /** OpenSSH's ConnectTimeout (TCP connect and banner exchange), in seconds. Default 10. */
  connectTimeoutSeconds?: number;
  /** Run under `setpriv --pdeathsig KILL`, so ssh dies with the test process. */
  dieWithParent?: boolean;
}

/** One running `ssh` process. */
export interface SshRun {
  /** What ssh has written to stdout and stderr so far. */
  readonly stdout: string;
  readonly stderr: string;
  /** Resolves when ssh has exited (or was killed at its time limit). Never rejects. */
  readonly done: Promise<CommandResult>;
  /** Waits until stdout matches `pattern`; fails at once if ssh exits first. */
  waitForStdout(pattern: RegExp, timeoutMs: number): Promise<RegExpMatchArray>;
  /** Waits until stderr matches `pattern` (auth banners land there); fails if ssh exits first. */
  waitForStderr(pattern: RegExp, timeoutMs: number): Promise<RegExpMatchArray>;
  /** SIGKILL (no-op once exited). */
  kill(): void;
}

/** The `ssh` command line, as run inside `from`'s namespace. */
export function sshCommandLine(
  from: TailscaleClient,
  host: string,
  command: string,
  options: SshOptions = {},
): string[] {
  const proxy = `${from.binaries.tailscale} --socket=${from.socketPath} nc %h %p`;
  return [
    "ssh",
    "-F",
    "/dev/null", // the host's ssh_config has no say
    "-o",
    `ProxyCommand=${proxy}`,
    "-o",
    "StrictHostKeyChecking=no",
    "-o",
    "UserKnownHostsFile=/dev/null",
    "-o",
    "GlobalKnownHostsFile=/dev/null",
    "-o",
    "BatchMode=yes",
    "-o",
    `ConnectTimeout=${options.connectTimeoutSeconds ?? 10}`,
    // INFO shows auth banners (Tailscale SSH's denials and check messages) on stderr.
    "-o",
    "LogLevel=INFO",
    "-n",
    `${options.user ?? "root"}@${host}`,
    command,
  ];
}

/** Starts `ssh` from `from` to `host` (a Tailscale IP) running `command` there. */
export function startSsh(
  from: TailscaleClient,
  host: string,
  command: string,
  options: SshOptions = {},
): SshRun {
  const argv = [
    ...(options.dieWithParent ? ["setpriv", "--pdeathsig", "KILL", "--"] : []),
    "ip",
    "netns",
    "exec",
    from.namespace.name,
    ...sshCommandLine(from, host, command, options),
  ];
  const child = new Deno.Command(argv[0], {
    args: argv.slice(1),
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    // A HOME of its own: ssh may create ~/.ssh, which must not touch the host's.
    env: { HOME: "/nonexistent-ssh-home" },
  }).spawn();
  let stdout = "";
  let stderr = "";
  let exited = false;
  const read = async (stream: ReadableStream<Uint8Array>, append: (text: string) => void) => {
    const decoder = new TextDecoder();
    for await (const chunk of stream) append(decoder.decode(chunk, { stream: true }));
  };
  const kill = () => {
    try {
      child.kill("SIGKILL");
    } catch {
      // Already exited.
    }
  };
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    kill();
  }, options.timeoutMs ?? 30_000);
  const waitForMatch = (stream: "stdout" | "stderr", pattern: RegExp, timeoutMs: number) =>
    waitFor(
      () => {
        const match = pattern.exec(stream === "stdout" ? stdout : stderr);
        if (match) return match;
        if (exited) throw new StopWaiting(`ssh exited before its ${stream} matched ${pattern}`);
        return undefined;
      },
      timeoutMs,
      { description: `ssh's ${stream} to match ${pattern}`, intervalMs: 100 },
    ).catch((error) => {
      throw new Error(`${error.message}\nstdout so far:\n${stdout}\nstderr so far:\n${stderr}`);
    });
  const done = (async (): Promise<CommandResult> => {
    const [status] = await Promise.all([
      child.status,
      read(child.stdout, (t) => (stdout += t)),
      read(child.stderr, (t) => (stderr += t)),
    ]);
    clearTimeout(timer);
    exited = true;
    return {
      code: status.signal ? -1 : status.code,
      success: status.success && !timedOut,
      stdout,
      stderr,
      timedOut,
    };
  })();
  return {
    get stdout() {
      return stdout;
    },
    get stderr() {
      return stderr;
    },
    done,
    kill,
    waitForStdout: (pattern, timeoutMs) => waitForMatch("stdout", pattern, timeoutMs),
    waitForStderr: (pattern, timeoutMs) => waitForMatch("stderr", pattern, timeoutMs),
  };
}

/** Runs `ssh` to completion (see {@link startSsh}). */
export function runSsh(
  from: TailscaleClient,
  host: string,
  command: string,
  options: SshOptions = {},
): Promise<CommandResult> {
  return startSsh(from, host, command, options).done;
}
