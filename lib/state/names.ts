/** Turns the hostname a client reports into a DNS-safe label, as MagicDNS names need. */
export function dnsSafeName(hostname: string): string {
  const label = hostname
    .toLowerCase()
    .normalize("NFKD")
    .replace(/[^a-z0-9-]+/g, "-")
    .replace(/-{2,}/g, "-")
    .replace(/^-+|-+$/g, "")
    .slice(0, 63)
    .replace(/-+$/, "");
  return label || "node";
}

/** Checks a name an admin gives a node: one DNS label, 1-63 of [a-z0-9-], not starting or ending with -. */
export function validGivenName(name: string): string | null {
  if (!/^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/.test(name)) {
    return `"${name}" is not a valid node name: use 1-63 lowercase letters, digits and inner hyphens`;
  }
  return null;
}

/** The first free name among `base`, `base-1`, `base-2`, … */
export function uniqueName(base: string, taken: (name: string) => boolean): string {
  if (!taken(base)) return base;
  for (let i = 1;; i++) {
    const suffix = `-${i}`;
    const candidate = base.slice(0, 63 - suffix.length).replace(/-+$/, "") + suffix;
    if (!taken(candidate)) return candidate;
  }
}
