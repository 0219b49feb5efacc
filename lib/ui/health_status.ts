/**
 * What the Health page shows, gathered in one place: the DERP map's regions (and which one is
 * this server's relay), the relay's and STUN server's counters, whether the database takes
 * writes (the same check as GET /health), the version, and the sampler's charts.
 */
import type { DerpStats, StunServerStats } from "../derp/mod.ts";
import type { DERPMap } from "../tailcfg/types.ts";
import { type VersionInfo, versionInfo } from "../version.ts";
import type { HealthSampler, HealthSeries } from "./health_sampler.ts";

export interface HealthDeps {
  derpMap(): DERPMap;
  derpStats(): { relay: DerpStats | null; stun: StunServerStats | null };
  /** The embedded relay's region id, null when derp.server is off. */
  embeddedRegionId: number | null;
  store: { readonly kind: string; checkWritable(): Promise<void> };
  state: { readonly nodeCount: number; readonly onlineCount: number };
  mapSessions(): number;
  sampler: HealthSampler;
  now?: () => number;
}

export interface RegionInfo {
  id: number;
  code: string;
  name: string;
  embedded: boolean;
  avoid: boolean;
  nodes: { name: string; hostName: string; derpPort?: number; stunPort?: number }[];
}

export interface HealthSnapshot {
  now: number;
  version: VersionInfo;
  database: { kind: string; writable: boolean; reason?: string };
  regions: RegionInfo[];
  relay: DerpStats | null;
  stun: StunServerStats | null;
  tailnet: { nodes: number; online: number; sessions: number };
  series: HealthSeries;
}

export async function collectHealth(deps: HealthDeps): Promise<HealthSnapshot> {
  let database: HealthSnapshot["database"] = { kind: deps.store.kind, writable: true };
  try {
    await deps.store.checkWritable();
  } catch (e) {
    database = {
      kind: deps.store.kind,
      writable: false,
      reason: (e as Error)?.message ?? String(e),
    };
  }
  const regions: RegionInfo[] = [];
  for (const r of Object.values(deps.derpMap().Regions)) {
    if (!r) continue;
    regions.push({
      id: r.RegionID,
      code: r.RegionCode,
      name: r.RegionName,
      embedded: r.RegionID === deps.embeddedRegionId,
      avoid: r.Avoid === true,
      nodes: (r.Nodes ?? []).map((n) => ({
        name: n.Name,
        hostName: n.HostName,
        derpPort: n.DERPPort,
        stunPort: n.STUNPort,
      })),
    });
  }
  regions.sort((a, b) => a.id - b.id);
  const { relay, stun } = deps.derpStats();
  return {
    now: (deps.now ?? Date.now)(),
    version: versionInfo(),
    database,
    regions,
    relay,
    stun,
    tailnet: {
      nodes: deps.state.nodeCount,
      online: deps.state.onlineCount,
      sessions: deps.mapSessions(),
    },
    series: deps.sampler.series(),
  };
}
