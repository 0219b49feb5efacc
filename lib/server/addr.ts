/** host:port parsing for listen addresses ("0.0.0.0:3478", "[::]:443", ":8080"). */
export function splitHostPort(addr: string): { host: string; port: number } {
  const m = /^\[?([^\]]*)\]?:(\d+)$/.exec(addr);
  if (!m) throw new Error(`invalid address ${addr}`);
  return { host: m[1] || "0.0.0.0", port: Number(m[2]) };
}
