/**
 * What every admin UI response carries, and the small HTTP pieces the pages share: the strict
 * CSP and other security headers, HTML and redirect responses, cookies, and reading a form.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import { timingSafeEqual } from "node:crypto";
import type { Html } from "./html.ts";

/**
 * No inline script or style anywhere (the one script and stylesheet come from `'self'`); images
 * may be data: or https: (OIDC users' pictures live on their provider); forms only post here;
 * never framed.
 */
export const CSP = "default-src 'none'; script-src 'self'; style-src 'self'; " +
  "img-src 'self' data: https:; connect-src 'self'; form-action 'self'; " +
  "frame-ancestors 'none'; base-uri 'none'";

export function securityHeaders(): Record<string, string> {
  return {
    "content-security-policy": CSP,
    "x-content-type-options": "nosniff",
    // Not no-referrer: with it a browser sends `Origin: null` on our own form posts, which the
    // same-site check must then refuse. same-origin still sends nothing to other sites.
    "referrer-policy": "same-origin",
    "x-frame-options": "DENY",
    "cross-origin-opener-policy": "same-origin",
    "cross-origin-resource-policy": "same-origin",
  };
}

/** A page: HTML, never cached. `cookies` are Set-Cookie values. */
export function sendHtml(
  req: IncomingMessage,
  res: ServerResponse,
  status: number,
  body: Html,
  cookies: string[] = [],
): void {
  if (res.headersSent) return void res.end();
  res.writeHead(status, {
    ...securityHeaders(),
    "content-type": "text/html; charset=utf-8",
    "cache-control": "no-store",
    ...(cookies.length ? { "set-cookie": cookies } : {}),
  });
  res.end(req.method === "HEAD" ? undefined : body.value);
}

/** 303 See Other: after a POST, the browser GETs `location`. */
export function redirect(res: ServerResponse, location: string, cookies: string[] = []): void {
  res.writeHead(303, {
    ...securityHeaders(),
    location,
    "cache-control": "no-store",
    ...(cookies.length ? { "set-cookie": cookies } : {}),
  });
  res.end();
}

export function sendPlain(res: ServerResponse, status: number, text: string): void {
  if (res.headersSent) return void res.end();
  res.writeHead(status, {
    ...securityHeaders(),
    "content-type": "text/plain; charset=utf-8",
    "cache-control": "no-store",
  });
  res.end(text);
}

export function parseCookies(req: IncomingMessage): Map<string, string> {
  const out = new Map<string, string>();
  for (const part of (req.headers.cookie ?? "").split(";")) {
    const eq = part.indexOf("=");
    if (eq > 0) out.set(part.slice(0, eq).trim(), part.slice(eq + 1).trim());
  }
  return out;
}

/** Constant-time string equality (different lengths are unequal at once: lengths are public). */
export function sameSecret(a: string, b: string): boolean {
  const x = Buffer.from(a, "utf8");
  const y = Buffer.from(b, "utf8");
  return x.length === y.length && timingSafeEqual(x, y);
}

export class FormTooLargeError extends Error {
  override name = "FormTooLargeError";
}

/** The urlencoded body of a POST; rejects with FormTooLargeError over `maxBytes`. */
export function readForm(req: IncomingMessage, maxBytes = 256 * 1024): Promise<URLSearchParams> {
  return new Promise((resolve, reject) => {
    const type = String(req.headers["content-type"] ?? "").split(";")[0].trim().toLowerCase();
    const chunks: Buffer[] = [];
    let size = 0;
    req.on("data", (c: Buffer) => {
      size += c.length;
      if (size > maxBytes) {
        req.removeAllListeners("data");
        req.resume();
        reject(new FormTooLargeError(`the form is larger than ${maxBytes} bytes`));
        return;
      }
      chunks.push(c);
    });
    req.on("end", () => {
      if (size > maxBytes) return;
      // Anything else (JSON, multipart) is not what our forms send: read as empty.
      const text = type === "application/x-www-form-urlencoded"
        ? Buffer.concat(chunks).toString("utf8")
        : "";
      resolve(new URLSearchParams(text));
    });
    req.on("error", reject);
  });
}
