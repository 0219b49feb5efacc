/**
 * Whether one node reaches an HTTP server through the tailnet (its own tailscaled's SOCKS5 proxy),
 * waited for in bounded time: the building blocks of the route, exit-node and policy tests.
 *
 * ```ts
 * await waitForHttp(alice, "10.77.1.10", 80, "lan-1");  // answered with that body
 * await assertNoHttp(bob, "10.77.1.10", 80);            // one attempt, refused or dropped
 * ```
 */
import assert from "node:assert/strict";
import { type TailscaleClient, waitFor } from "../harness.ts";
import { aclDrops, probeHttp } from "./node_services.ts";

/** Waits until `from` gets `body` from `http://ip:port/` through its SOCKS5 proxy. */
export async function waitForHttp(
  from: TailscaleClient,
  ip: string,
  port: number,
  body: string,
  timeoutMs = 30_000,
): Promise<void> {
  await waitFor(
    async () => {
      const probe = await probeHttp(from, ip, port);
      if (!probe.connected) throw new Error(`curl exit ${probe.exitCode}: ${probe.error}`);
      assert.equal(probe.body, body, `${ip}:${port} answered by the wrong server`);
      return true;
    },
    timeoutMs,
    { description: `${from.name} → ${ip}:${port} answering ${JSON.stringify(body)}` },
  );
}

/** Waits until `from` no longer gets an answer from `http://ip:port/`. */
export async function waitForNoHttp(
  from: TailscaleClient,
  ip: string,
  port: number,
  timeoutMs = 30_000,
): Promise<void> {
  await waitFor(
    async () => {
      const probe = await probeHttp(from, ip, port, 2_000);
      if (probe.connected) throw new Error(`still answered: ${probe.body}`);
      return true;
    },
    timeoutMs,
    { description: `${from.name} → ${ip}:${port} unreachable` },
  );
}

/**
 * Waits until a TSMP ping from `from` to `to` pongs: a WireGuard tunnel is up between them (a
 * TSMP pong travels inside it; a disco pong does not). The first handshake is often lost and
 * retried 5 s later, longer than one 3 s connection attempt, so a test that wants to see a
 * refusal (not a lost SYN) opens the tunnel first.
 */
export async function waitForTunnel(
  from: TailscaleClient,
  to: TailscaleClient,
  timeoutMs = 30_000,
): Promise<void> {
  const ip = (await to.ips()).find((a) => !a.includes(":"));
  assert.ok(ip, `${to.name} has no IPv4 Tailscale address`);
  await waitFor(
    async () => {
      const ping = await from.ping(ip, { type: "tsmp", timeoutMs: 3_000 });
      if (!ping.pong) throw new Error(ping.output);
      return true;
    },
    timeoutMs,
    { description: `${from.name} → ${to.name}: a WireGuard tunnel (TSMP pong)`, intervalMs: 200 },
  );
}

/**
 * One attempt from `from` to `http://ip:port/` must fail (curl gives up after 2 s). With
 * `droppedBy`, that node's packet filter must have dropped it (its ACL drop counter moved): the
 * policy refused it there, it was not lost on the way (the tunnel to it is opened first).
 */
export async function assertNoHttp(
  from: TailscaleClient,
  ip: string,
  port: number,
  droppedBy?: TailscaleClient,
): Promise<void> {
  if (droppedBy) await waitForTunnel(from, droppedBy);
  const before = droppedBy ? await aclDrops(droppedBy) : 0;
  const probe = await probeHttp(from, ip, port, 2_000);
  assert.equal(
    probe.connected,
    false,
    `${from.name} reached ${ip}:${port}, answered ${JSON.stringify(probe.body)}`,
  );
  if (!droppedBy) return;
  const after = await aclDrops(droppedBy);
  assert.ok(
    after > before,
    `${droppedBy.name}'s filter dropped nothing (${before} ACL drops before and after): ` +
      `curl exit ${probe.exitCode}: ${probe.error}`,
  );
}
