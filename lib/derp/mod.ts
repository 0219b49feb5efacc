/** The embedded DERP relay and STUN server: what the main server wires in. */
export { DerpServer } from "./server.ts";
export type { AcceptOptions, DerpServerOptions, DerpStats, VerifyInfo } from "./server.ts";
export {
  createBootstrapDnsHandler,
  createVerifyHandler,
  derpNoUpgradeHandler,
  derpProbeHandler,
  generate204Handler,
  handleDerpUpgrade,
} from "./http.ts";
export type { BootstrapDnsOptions } from "./http.ts";
export { startStunServer } from "./stun_server.ts";
export type { StunServer, StunServerOptions, StunServerStats } from "./stun_server.ts";
export {
  decodeDerpMap,
  DerpMapError,
  DerpMapSource,
  embeddedDerpRegion,
  mergeDerpMaps,
  parseDerpMapText,
} from "./derp_map.ts";
export type {
  DerpMapRefresh,
  DerpMapSourceError,
  DerpMapSourceOptions,
  EmbeddedRegionOptions,
} from "./derp_map.ts";
