/**
 * Every page of the admin UI, in one list (docs/ui.md, "Adding a page"): a page module exports
 * a PageFactory and gets one line here. The nav order comes from each page's `nav.order`.
 */
import type { PageFactory } from "./context.ts";
import { auditPage } from "./audit_page.ts";
import { sessionsPage } from "./sessions_page.ts";

export const PAGES: PageFactory[] = [
  sessionsPage,
  auditPage,
];
