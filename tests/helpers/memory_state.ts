/** A State over a fresh in-memory SQLite store: the starting point of most in-process tests. */
import { parseConfigText } from "../../lib/config/load.ts";
import { silentLogger } from "../../lib/log/log.ts";
import { type RegisterInput, State, type StateDeps } from "../../lib/state/state.ts";
import { openStore } from "../../lib/store/mod.ts";
import type { NodeRecord, Store } from "../../lib/store/types.ts";
import { randomKey } from "./control.ts";

/** `config` defaults to the built-in defaults, `log` to a silent logger. */
export async function openMemoryState(
  deps: Partial<Omit<StateDeps, "store">> = {},
): Promise<{ store: Store; state: State }> {
  const store = await openStore({
    type: "sqlite",
    sqlite: { path: ":memory:", writeAheadLog: false },
  });
  const state = await State.open({
    store,
    log: deps.log ?? silentLogger(),
    config: deps.config ?? parseConfigText("").config,
    now: deps.now,
  });
  return { store, state };
}

/** Registers a node for `userId` as `auth register` would, with fresh random keys. */
export function registerTestNode(
  state: State,
  userId: number,
  hostname: string,
  extra: Partial<RegisterInput> = {},
): Promise<NodeRecord> {
  return state.registerNode({
    machineKey: randomKey("mkey:"),
    nodeKey: randomKey("nodekey:"),
    hostname,
    hostinfo: { Hostname: hostname },
    userId,
    tags: [],
    authKeyId: null,
    method: "cli",
    ephemeral: false,
    expiry: null,
    ...extra,
  });
}
