import assert from "node:assert/strict";
import { namesCommand, parseInvocation } from "../lib/cli/args.ts";
import { COMMANDS } from "../lib/cli/commands/mod.ts";
import { parseKeyDuration } from "../lib/cli/duration.ts";
import { UsageError } from "../lib/cli/errors.ts";

function run(argv: string[]) {
  const inv = parseInvocation(argv, COMMANDS);
  assert.equal(inv.kind, "run", `expected a command for ${argv.join(" ")}`);
  return inv as Extract<typeof inv, { kind: "run" }>;
}

function usageError(argv: string[], pattern: RegExp) {
  assert.throws(
    () => parseInvocation(argv, COMMANDS),
    (e) => e instanceof UsageError && pattern.test(e.message),
    `${argv.join(" ")} should be a usage error matching ${pattern}`,
  );
}

Deno.test("cli args: commands are found by name and by headscale's aliases", () => {
  const cases: [string[], string[]][] = [
    [["users", "create", "alice"], ["users", "create"]],
    [["user", "ls"], ["users", "list"]],
    [["users", "show"], ["users", "list"]],
    [["users", "delete", "-n", "a"], ["users", "destroy"]],
    [["pre", "c"], ["preauthkeys", "create"]],
    [["authkey", "list"], ["preauthkeys", "list"]],
    [["preauthkey", "revoke", "-i", "1"], ["preauthkeys", "expire"]],
    [["preauthkeys", "rm", "-i", "1"], ["preauthkeys", "delete"]],
    [["api", "new"], ["apikeys", "create"]],
    [["apikey", "remove", "-p", "abc"], ["apikeys", "delete"]],
    [["node", "lsr"], ["nodes", "list-routes"]],
    [["nodes", "logout", "-i", "3"], ["nodes", "expire"]],
    [["nodes", "t", "-i", "3", "-t", "tag:a"], ["nodes", "tag"]],
    [["policy", "view"], ["policy", "get"]],
    [["policy", "put", "-f", "p.json"], ["policy", "set"]],
    [["health"], ["health"]],
    [["configtest"], ["configtest"]],
  ];
  for (const [argv, path] of cases) assert.deepEqual(run(argv).path, path, argv.join(" "));
});

Deno.test("cli args: global flags work before or after the command words", () => {
  const a = run(["-c", "/etc/x.yaml", "-o", "json", "users", "list", "--force"]);
  assert.deepEqual(a.path, ["users", "list"]);
  assert.equal(a.globals.config, "/etc/x.yaml");
  assert.equal(a.globals.output, "json");
  assert.equal(a.globals.force, true);
  const b = run(["users", "--output=yaml", "list", "--config=c.yaml"]);
  assert.deepEqual(b.path, ["users", "list"]);
  assert.equal(b.globals.output, "yaml");
  assert.equal(b.globals.config, "c.yaml");
  assert.equal(run(["health", "-ojson-line"]).globals.output, "json-line");
  assert.equal(run(["health"]).globals.output, "");
});

Deno.test("cli args: flag values are typed: ids, lists, defaults, booleans", () => {
  const key = run(["preauthkeys", "create", "-u", "alice", "--reusable", "--tags", "tag:a,tag:b"]);
  assert.equal(key.options.string("user"), "alice");
  assert.equal(key.options.boolean("reusable"), true);
  assert.equal(key.options.boolean("ephemeral"), false);
  assert.deepEqual(key.options.list("tags"), ["tag:a", "tag:b"]);
  assert.equal(key.options.string("expiration"), "1h", "headscale's default");
  assert.equal(run(["apikeys", "create"]).options.string("expiration"), "90d");

  const repeated = run(["nodes", "tag", "-i", "7", "-t", "tag:a", "-t", "tag:b,tag:c"]);
  assert.equal(repeated.options.id("identifier"), 7n);
  assert.deepEqual(repeated.options.list("tags"), ["tag:a", "tag:b", "tag:c"]);

  const cleared = run(["nodes", "approve-routes", "-i", "2", "-r", ""]);
  assert.deepEqual(cleared.options.list("routes"), [], "an empty -r clears the routes");

  const renamed = run(["nodes", "rename", "-i", "4", "new-name"]);
  assert.deepEqual(renamed.positionals, ["new-name"]);
  assert.equal(
    run(["users", "list", "-i", "18446744073709551615"]).options.id("identifier"),
    2n ** 64n - 1n,
  );
});

Deno.test("cli args: malformed invocations are usage errors with a clear message", () => {
  usageError(["users", "create", "alice", "--bogus"], /^unknown flag --bogus$/);
  usageError(["users", "list", "-x"], /^unknown flag -x$/);
  usageError(["nodes", "list", "-c"], /^flag --config needs a value$/);
  usageError(["users", "create", "--email"], /^flag --email needs a value$/);
  usageError(["preauthkeys", "create", "--reusable=yes"], /does not take a value/);
  usageError(["users", "create"], /missing argument NAME/);
  usageError(["users", "create", "a", "b"], /unexpected argument "b"/);
  usageError(["users", "list", "extra"], /unexpected argument "extra"/);
  usageError(["nodes", "delete"], /required flag --identifier is missing/);
  usageError(["users", "rename", "-n", "a"], /required flag --new-name is missing/);
  usageError(["nodes", "delete", "-i", "abc"], /--identifier must be a positive whole number/);
  usageError(["nodes", "delete", "-i", "0"], /--identifier must be a positive whole number/);
  usageError(["nodes", "delete", "-i", "18446744073709551616"], /positive whole number/);
  usageError(["users", "list", "-o", "xml"], /unknown output format "xml"/);
  usageError(["frobnicate"], /unknown command "frobnicate"/);
  usageError(["users", "frobnicate"], /unknown command "frobnicate" for "users"/);
  usageError(["auth", "approve"], /required flag --auth-id/);
  usageError(["--bogus"], /unknown flag --bogus/);
});

Deno.test("cli args: help is available at every level", () => {
  for (
    const [argv, pattern] of [
      [[], /Usage: headscale-deno <command>/],
      [["--help"], /Commands:\n {2}users/],
      [["help"], /Commands:/],
      [["users"], /Usage: headscale-deno users <subcommand>/],
      [["users", "--help"], /Subcommands:[\s\S]*destroy/],
      [["users", "create", "-h"], /Usage: headscale-deno users create NAME \[flags\]/],
      [["help", "pre", "create"], /--expiration string +lifetime.*default "1h"/],
      [["nodes", "expire", "--help"], /Aliases: logout, exp, e/],
    ] as [string[], RegExp][]
  ) {
    const inv = parseInvocation(argv, COMMANDS);
    assert.equal(inv.kind, "help", argv.join(" "));
    assert.match((inv as { text: string }).text, pattern, argv.join(" "));
  }
});

Deno.test("cli args: key lifetimes are Prometheus-style durations", () => {
  const h = 3_600_000;
  const d = 24 * h;
  assert.equal(parseKeyDuration("1h"), h);
  assert.equal(parseKeyDuration("90d"), 90 * d);
  assert.equal(parseKeyDuration("1w"), 7 * d);
  assert.equal(parseKeyDuration("1y"), 365 * d);
  assert.equal(parseKeyDuration("1h30m"), 1.5 * h);
  assert.equal(parseKeyDuration("2d12h"), 2.5 * d);
  assert.equal(parseKeyDuration("500ms"), 500);
  assert.equal(parseKeyDuration("1m5s"), 65_000);
  assert.equal(parseKeyDuration("0"), 0);
  for (
    const bad of ["", "1", "1.5h", "h", "30m1h", "1h1h", "-1h", "1 h", "1x", "99999999999999999y"]
  ) {
    assert.throws(() => parseKeyDuration(bad), Error, `"${bad}"`);
  }
});

Deno.test("cli args: a single binary can tell CLI commands from a server start", () => {
  for (const argv of [["users", "list"], ["-c", "x.yaml", "pre", "ls"], ["help"], ["version"]]) {
    assert.ok(namesCommand(argv, COMMANDS), argv.join(" "));
  }
  for (const argv of [[], ["serve"], ["-c", "config.yaml"], ["--config", "users"], ["-h"]]) {
    assert.ok(!namesCommand(argv, COMMANDS), argv.join(" "));
  }
});
