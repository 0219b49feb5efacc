/**
 * Value checks and conversions both backends share: JSON text columns, timestamps, ids. Reading
 * a malformed value throws an error naming the column and row, never a silent default.
 */

/** Refuses an Invalid Date before it reaches the database. */
export function checkDate(value: Date, field: string): Date {
  if (!(value instanceof Date) || Number.isNaN(value.getTime())) {
    throw new TypeError(`${field} is not a valid date`);
  }
  return value;
}

/** ISO-8601 UTC with milliseconds (the SQLite form); sorts and round-trips exactly. */
export function encodeTime(value: Date, field: string): string {
  return checkDate(value, field).toISOString();
}

export function decodeTime(value: unknown, where: string): Date {
  const date = value instanceof Date ? value : new Date(String(value));
  if (Number.isNaN(date.getTime())) throw new Error(`${where} holds an invalid timestamp`);
  return date;
}

export function decodeOptionalTime(value: unknown, where: string): Date | null {
  return value === null || value === undefined ? null : decodeTime(value, where);
}

export function encodeStrings(values: readonly string[], field: string): string {
  if (!Array.isArray(values) || values.some((v) => typeof v !== "string")) {
    throw new TypeError(`${field} must be a list of strings`);
  }
  return JSON.stringify(values);
}

export function decodeStrings(text: unknown, where: string): string[] {
  let value: unknown;
  try {
    value = JSON.parse(String(text));
  } catch {
    throw new Error(`${where} is not valid JSON`);
  }
  if (!Array.isArray(value) || value.some((v) => typeof v !== "string")) {
    throw new Error(`${where} is not a JSON list of strings`);
  }
  return value;
}

export function encodeObject(value: Record<string, unknown> | null, field: string): string | null {
  if (value === null) return null;
  if (typeof value !== "object" || Array.isArray(value)) {
    throw new TypeError(`${field} must be an object or null`);
  }
  return JSON.stringify(value);
}

export function decodeObject(text: unknown, where: string): Record<string, unknown> | null {
  if (text === null || text === undefined) return null;
  let value: unknown;
  try {
    value = JSON.parse(String(text));
  } catch {
    throw new Error(`${where} is not valid JSON`);
  }
  if (value === null) return null;
  if (typeof value !== "object" || Array.isArray(value)) {
    throw new Error(`${where} is not a JSON object`);
  }
  return value as Record<string, unknown>;
}

/** Ids are integers; anything else would match no row or the wrong one. */
export function checkId(id: number, field: string): number {
  if (!Number.isSafeInteger(id) || id < 1) {
    throw new TypeError(`${field} must be a positive integer`);
  }
  return id;
}

export function checkOptionalId(id: number | null, field: string): number | null {
  return id === null ? null : checkId(id, field);
}
