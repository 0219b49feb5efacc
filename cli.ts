/**
 * headscale-deno's command line (`deno task cli …`): manages users, nodes, keys and the policy of
 * a running server, locally over its unix socket or remotely with an API key. See lib/cli/.
 */
import { denoIO, runCli } from "./lib/cli/run.ts";

if (import.meta.main) Deno.exit(await runCli(Deno.args, denoIO()));
