/** headscale's registration ids (types.AuthID): "hskey-authreq-" and 24 URL-safe characters. */
const REGISTRATION_ID = /^hskey-authreq-[A-Za-z0-9_-]{24}$/;

/** Checks a registration id as headscale's types.AuthIDFromString does; null when valid. */
export function registrationIdProblem(text: string): string | null {
  if (REGISTRATION_ID.test(text)) return null;
  return `invalid registration key "${text}": expected "hskey-authreq-" followed by 24 ` +
    'letters, digits, "-" or "_" (38 characters)';
}
