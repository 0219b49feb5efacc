/**
 * JSON text that the compiler knows the shape of. Map responses are assembled from cached
 * fragments (a peer's node, a user's profile, the DERP map) for speed; branding each fragment
 * with the type it encodes lets the assembler check field names against the tailcfg types
 * without parsing or re-serialising anything: the bytes are exactly what JSON.stringify and
 * string joins produce.
 */
declare const encodes: unique symbol;

/** JSON text encoding a T (built by toJson and the helpers below, never by hand). */
export type Json<T> = string & { readonly [encodes]: T };

export function toJson<T>(value: T): Json<T> {
  return JSON.stringify(value) as Json<T>;
}

/** A JSON array of fragments, in order. */
export function jsonArray<T>(items: readonly Json<T>[]): Json<T[]> {
  return `[${items.join(",")}]` as Json<T[]>;
}

type Fields<T> = { [K in keyof T]?: Json<NonNullable<T[K]>> };

/** `"Key":value` members for the fields that are set, in the order given. */
export function jsonMembers<T>(fields: Fields<T>): string[] {
  const out: string[] = [];
  for (const [key, value] of Object.entries(fields)) {
    if (value !== undefined) out.push(`${JSON.stringify(key)}:${value}`);
  }
  return out;
}

/** A JSON object of the fields that are set, in the order given. */
export function jsonObject<T>(fields: Fields<T>): Json<T> {
  return `{${jsonMembers(fields).join(",")}}` as Json<T>;
}

/** `"Key":` for one field of T, to open a member whose value is streamed in parts. */
export function jsonKey<T>(key: keyof T & string): string {
  return `${JSON.stringify(key)}:`;
}
