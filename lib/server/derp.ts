/**
 * The embedded DERP relay, its STUN listener and the DERP map clients get, put together from
 * the `derp.*` configuration as headscale does: the embedded region (if enabled) is added to the
 * maps from derp.urls and derp.paths, which refresh every derp.update_frequency.
 */
import type { Config } from "../config/config.ts";
import type { Logger } from "../log/log.ts";
import type { State } from "../state/state.ts";
import type { DERPMap } from "../tailcfg/types.ts";
import type { Router } from "../http/router.ts";
import { loadOrCreatePrivateKey } from "../auth/keyfile.ts";
import {
  createBootstrapDnsHandler,
  createVerifyHandler,
  DerpMapSource,
  derpNoUpgradeHandler,
  derpProbeHandler,
  DerpServer,
  type DerpStats,
  embeddedDerpRegion,
  generate204Handler,
  handleDerpUpgrade,
  startStunServer,
  type StunServer,
  type StunServerStats,
} from "../derp/mod.ts";
import { splitHostPort } from "./addr.ts";
import { hasKeyKind } from "../tailcfg/keys.ts";

export interface EmbeddedDerp {
  /** The merged DERP map (at least the embedded region when it is enabled). */
  map(): DERPMap;
  onMapChange(listener: () => void): void;
  /** Relay and STUN counters; null for a part that is disabled. */
  stats(): { relay: DerpStats | null; stun: StunServerStats | null };
  /** Adds /derp, /derp/probe, /derp/latency-check, /generate_204, /bootstrap-dns, /verify. */
  mount(router: Router): void;
  close(): Promise<void>;
}

function defaultPort(url: URL): number {
  if (url.port !== "") return Number(url.port);
  return url.protocol === "https:" ? 443 : 80;
}

export async function createDerp(config: Config, state: State, log: Logger): Promise<EmbeddedDerp> {
  const server = config.derp.server;
  const listeners = new Set<() => void>();
  // Only nodes of this tailnet may relay through us (derp.server.verify_clients).
  const verify = (nodeKey: string) =>
    hasKeyKind(nodeKey, "nodekey") && state.nodeByNodeKey(nodeKey) !== undefined;

  let relay: DerpServer | undefined;
  let stun: StunServer | undefined;
  let region: ReturnType<typeof embeddedDerpRegion> | null = null;
  if (server.enabled) {
    const privateKey = await loadOrCreatePrivateKey(server.privateKeyPath);
    relay = new DerpServer({
      privateKey,
      verifyClient: server.verifyClients ? verify : undefined,
      log,
    });
    let stunPort = -1;
    if (server.stunEnabled) {
      const { host, port } = splitHostPort(server.stunListenAddr);
      stun = await startStunServer({ address: host, port, log });
      stunPort = stun.port;
    }
    const url = new URL(config.serverUrl);
    region = embeddedDerpRegion({
      regionId: server.regionId,
      regionCode: server.regionCode,
      regionName: server.regionName,
      hostName: url.hostname,
      ipv4: server.ipv4,
      ipv6: server.ipv6,
      derpPort: defaultPort(url),
      stunPort,
    });
    // Tailscale clients speak DERP over TLS only (as with headscale's embedded relay).
    if (url.protocol === "http:") {
      log.info(
        "embedded DERP: clients reach it only over TLS; with an http:// server_url set " +
          "tls_cert_path/tls_key_path or put a TLS proxy in front, or peers without a direct path " +
          "cannot relay",
      );
    }
  }

  const source = new DerpMapSource({
    urls: config.derp.urls,
    paths: config.derp.paths,
    embeddedRegion: server.automaticallyAddEmbeddedDerpRegion ? region : null,
    log,
  });
  const first = await source.refresh();
  for (const e of first.errors) {
    log.warn("derp map source failed", { source: e.source, error: e.message });
  }
  if (Object.keys(source.current().Regions).length === 0) {
    log.warn(
      "the DERP map is empty: clients need at least one region (enable derp.server or set derp.urls)",
    );
  }
  if (
    config.derp.autoUpdateEnabled && (config.derp.urls.length > 0 || config.derp.paths.length > 0)
  ) {
    source.start(config.derp.updateFrequencyMs, () => {
      for (const l of listeners) l();
    });
  }

  return {
    map: () => source.current(),
    onMapChange: (l) => listeners.add(l),
    stats: () => ({ relay: relay?.stats() ?? null, stun: stun?.stats() ?? null }),
    mount(router) {
      router
        .on("GET", "/derp/probe", derpProbeHandler)
        .on("GET", "/derp/latency-check", derpProbeHandler)
        .on("GET", "/generate_204", generate204Handler)
        .on(
          "GET",
          "/bootstrap-dns",
          createBootstrapDnsHandler({ hostNames: () => source.hostNames(), log }),
        )
        .on("POST", "/verify", createVerifyHandler(verify, log));
      if (relay) {
        const r = relay;
        router
          .on("GET", "/derp", derpNoUpgradeHandler)
          .upgrade("/derp", (req, socket, head) => handleDerpUpgrade(req, socket, head, r));
      }
    },
    async close() {
      source.stop();
      await relay?.close();
      await stun?.close();
    },
  };
}
