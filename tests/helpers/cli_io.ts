/** CLI input/output captured in memory, for running `runCli` in-process. */
import type { CliIO } from "../../lib/cli/command.ts";

export function captureIO(): CliIO & { out: string[]; err: string[] } {
  const out: string[] = [];
  const err: string[] = [];
  return {
    out,
    err,
    print: (t) => out.push(t),
    printError: (t) => err.push(t),
    ask: () => Promise.resolve(null),
    stdinIsTerminal: false,
    stdoutIsTerminal: false,
    env: {},
    now: () => new Date(),
  };
}
