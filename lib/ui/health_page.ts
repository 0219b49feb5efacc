/**
 * The Health page (GET /health under the UI's path): DERP regions and the embedded relay's load,
 * the database's state, the version, and the sampler's charts. The sampler and the DERP map come
 * from server.ts (UiDeps.health), which creates and starts the sampler with the server.
 */
import type { DERPMap } from "../tailcfg/types.ts";
import type { PageFactory } from "./context.ts";
import type { HealthSampler } from "./health_sampler.ts";
import { collectHealth } from "./health_status.ts";
import { healthView } from "./health_view.ts";

export interface HealthPageSources {
  sampler: HealthSampler;
  derpMap(): DERPMap;
  /** The embedded relay's region, null when derp.server is off. */
  embeddedRegionId: number | null;
}

export const healthPage: PageFactory = (deps) => {
  const o = deps.health;
  return {
    nav: { label: "Health", path: "/health", order: 60 },
    routes: [{
      method: "GET",
      path: "/health",
      handler: async (ctx) => {
        const snapshot = await collectHealth({
          derpMap: o.derpMap,
          derpStats: deps.metrics.derp,
          embeddedRegionId: o.embeddedRegionId,
          store: deps.database,
          state: deps.state,
          mapSessions: deps.metrics.sessions,
          sampler: o.sampler,
          now: () => deps.now().getTime(),
        });
        ctx.render({ title: "Health", body: healthView(snapshot) });
      },
    }],
  };
};
