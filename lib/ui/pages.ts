/**
 * Every page of the admin UI, in one list (docs/ui.md, "Adding a page"): a page module exports
 * a PageFactory and gets one line here. The nav order comes from each page's `nav.order`.
 */
import type { PageFactory } from "./context.ts";
import { auditPage } from "./audit_page.ts";
import { keysPage } from "./keys.ts";
import { machinesPage } from "./machines.ts";
import { pendingPage } from "./pending.ts";
import { policyPage } from "./policy_page.ts";
import { healthPage } from "./health_page.ts";
import { sessionsPage } from "./sessions_page.ts";
import { usersPage } from "./users.ts";

export const PAGES: PageFactory[] = [
  machinesPage,
  usersPage,
  keysPage,
  pendingPage,
  policyPage,
  healthPage,
  sessionsPage,
  auditPage,
];
