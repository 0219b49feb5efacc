/**
 * Test and benchmark support: a control plane over a real State and an in-memory SQLite store,
 * with helpers to make users, pre-auth keys, and client connections over in-memory pipes.
 */
import { randomBytes } from "node:crypto";
import type { Config } from "../config/config.ts";
import { parseConfigText } from "../config/load.ts";
import { type Logger, silentLogger } from "../log/log.ts";
import { State } from "../state/state.ts";
import { openStore } from "../store/mod.ts";
import type { Store, UserRecord } from "../store/types.ts";
import type { DERPMap } from "../tailcfg/types.ts";
import { ControlClient, duplexPair } from "./client.ts";
import { type ControlPlane, type ControlPlaneDeps, createControlPlane } from "./mod.ts";

export function randomKey(prefix: "mkey:" | "nodekey:" | "discokey:"): string {
  return prefix + randomBytes(32).toString("hex");
}

export const TEST_DERP_MAP: DERPMap = {
  Regions: {
    "999": {
      RegionID: 999,
      RegionCode: "test",
      RegionName: "Test",
      Nodes: [{ Name: "999a", RegionID: 999, HostName: "127.0.0.1", DERPPort: 3340 }],
    },
  },
};

export interface TestControl {
  store: Store;
  state: State;
  config: Config;
  control: ControlPlane;
  user(name: string): Promise<UserRecord>;
  authKey(opts: {
    user?: UserRecord | null;
    reusable?: boolean;
    ephemeral?: boolean;
    tags?: string[];
    expiration?: Date | null;
  }): Promise<string>;
  /** A client connection as if Noise had authenticated `machineKey`. */
  connect(machineKey: string, capVersion?: number): ControlClient;
  close(): Promise<void>;
}

export async function startTestControl(opts: {
  configYaml?: string;
  /** Adjusts the parsed config (e.g. values validation would refuse, for fast tests). */
  configure?: (config: Config) => void;
  /** Defaults to a silent logger. */
  log?: Logger;
  tuning?: ControlPlaneDeps["tuning"];
  policy?: ControlPlaneDeps["policy"];
  debugDumpMapResponsePath?: string;
} = {}): Promise<TestControl> {
  const { config } = parseConfigText(opts.configYaml ?? "", { env: {} });
  opts.configure?.(config);
  const log = opts.log ?? silentLogger();
  const store = await openStore({
    type: "sqlite",
    sqlite: { path: ":memory:", writeAheadLog: false },
  });
  const state = await State.open({ store, log, config });
  const control = createControlPlane({
    state,
    config,
    log,
    derpMap: () => TEST_DERP_MAP,
    policy: opts.policy,
    debugDumpMapResponsePath: opts.debugDumpMapResponsePath,
    tuning: { batchDelayMs: 5, ...opts.tuning },
  });
  const clients: ControlClient[] = [];
  return {
    store,
    state,
    config,
    control,
    user: (name) => state.createUser({ name }),
    async authKey(o) {
      const { key } = await state.createPreAuthKey({
        userId: o.user?.id ?? null,
        reusable: o.reusable ?? false,
        ephemeral: o.ephemeral ?? false,
        expiration: o.expiration ?? null,
        tags: o.tags ?? [],
      });
      return key;
    },
    connect(machineKey, capVersion = 130) {
      const [serverEnd, clientEnd] = duplexPair();
      control.handleNoiseConnection(serverEnd, machineKey, capVersion);
      const client = ControlClient.over(clientEnd);
      clients.push(client);
      return client;
    },
    async close() {
      for (const c of clients) c.close();
      await control.close();
      await state.close();
      await store.close();
    },
  };
}
