/**
 * The STUN listener of the embedded DERP region: answers tailscaled's binding requests with
 * the source address it saw, and ignores everything else (never throws on input).
 */
import dgram from "node:dgram";
import type { Logger } from "../log/log.ts";
import { bindingResponse, ipBytes, parseBindingRequest } from "./stun.ts";

export interface StunServerOptions {
  /** Listen address: "0.0.0.0" (IPv4), "::" (IPv6, dual-stack where the OS allows) or one IP. */
  address: string;
  /** UDP port; 0 picks a free one (tests). */
  port: number;
  log: Logger;
}

export interface StunServerStats {
  requests: number;
  responses: number;
  ignored: number;
}

export interface StunServer {
  /** The bound address and port. */
  readonly address: string;
  readonly port: number;
  stats(): StunServerStats;
  close(): Promise<void>;
}

export function startStunServer(opts: StunServerOptions): Promise<StunServer> {
  const type = opts.address.includes(":") ? "udp6" : "udp4";
  const socket = dgram.createSocket({ type });
  const log = opts.log;
  const stats: StunServerStats = { requests: 0, responses: 0, ignored: 0 };

  socket.on("message", (msg: Uint8Array, rinfo: dgram.RemoteInfo) => {
    stats.requests++;
    let txId: Uint8Array;
    try {
      txId = parseBindingRequest(msg);
    } catch (e) {
      stats.ignored++;
      if (log.enabled("trace")) {
        log.trace("stun: ignored packet", { from: rinfo.address, error: e });
      }
      return;
    }
    const addr = ipBytes(rinfo.address);
    if (!addr) {
      stats.ignored++;
      return;
    }
    socket.send(bindingResponse(txId, addr, rinfo.port), rinfo.port, rinfo.address, (err) => {
      if (err) log.debug("stun: send failed", { to: rinfo.address, error: err });
      else stats.responses++;
    });
  });

  return new Promise((resolve, reject) => {
    const onError = (e: Error) => {
      socket.close();
      reject(e);
    };
    socket.once("error", onError);
    socket.bind(opts.port, opts.address, () => {
      socket.off("error", onError);
      socket.on("error", (e) => log.warn("stun: socket error", { error: e }));
      const bound = socket.address();
      const host = bound.address.includes(":") ? `[${bound.address}]` : bound.address;
      log.info("stun: listening", { addr: `${host}:${bound.port}` });
      let closing: Promise<void> | undefined;
      resolve({
        address: bound.address,
        port: bound.port,
        stats: () => ({ ...stats }),
        close: () => closing ??= new Promise<void>((r) => socket.close(() => r())),
      });
    });
  });
}
