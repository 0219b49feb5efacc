/** Every command the CLI knows, in the order help lists them. */
import type { RootEntry } from "../command.ts";
import { adminGroup, auditGroup } from "./admin.ts";
import { apiKeysGroup } from "./apikeys.ts";
import { authGroup } from "./auth.ts";
import { debugGroup } from "./debug.ts";
import { generateGroup } from "./generate.ts";
import { migrateGroup } from "./migrate.ts";
import { configTest, health, version } from "./misc.ts";
import { nodesGroup } from "./nodes.ts";
import { policyGroup } from "./policy.ts";
import { preAuthKeysGroup } from "./preauthkeys.ts";
import { usersGroup } from "./users.ts";

export const COMMANDS: RootEntry[] = [
  usersGroup,
  nodesGroup,
  preAuthKeysGroup,
  apiKeysGroup,
  authGroup,
  policyGroup,
  adminGroup,
  auditGroup,
  debugGroup,
  generateGroup,
  migrateGroup,
  configTest,
  health,
  version,
];
