/**
 * The oldest client the server talks to: Tailscale v1.80 (tailcfg.CapabilityVersion 113). Older
 * clients are refused at /key, at the Noise upgrade and at /machine/*.
 */
export const MIN_CAP_VERSION = 113;
