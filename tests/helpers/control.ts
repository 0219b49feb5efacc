/**
 * Test and benchmark support: a control plane over a real State and an in-memory SQLite store,
 * with helpers to make users, pre-auth keys, and client connections over in-memory pipes.
 */
import { randomBytes } from "node:crypto";
import type { Config } from "../../lib/config/config.ts";
import { parseConfigText } from "../../lib/config/load.ts";
import { type Logger, silentLogger } from "../../lib/log/log.ts";
import { Mapper } from "../../lib/mapper/mapper.ts";
import { Notifier } from "../../lib/mapper/notifier.ts";
import type { PolicyView } from "../../lib/mapper/policy_view.ts";
import { EphemeralGc } from "../../lib/state/ephemeral_gc.ts";
import { State } from "../../lib/state/state.ts";
import { openStore } from "../../lib/store/mod.ts";
import type { Store, UserRecord } from "../../lib/store/types.ts";
import type { DERPMap } from "../../lib/tailcfg/types.ts";
import type { MachineKey } from "../../lib/tailcfg/keys.ts";
import { ControlClient, duplexPair } from "./control_client.ts";
import {
  type ControlPlane,
  type ControlPlaneDeps,
  createControlPlane,
} from "../../lib/control/mod.ts";

export function randomKey<P extends "mkey:" | "nodekey:" | "discokey:">(
  prefix: P,
): `${P}${string}` {
  return `${prefix}${randomBytes(32).toString("hex")}`;
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
  mapper: Mapper;
  notifier: Notifier;
  /** Plugs in a policy as server.ts does (mapper, SSH approvals, policy-changed). */
  setPolicy(policy: PolicyView): void;
  user(name: string): Promise<UserRecord>;
  authKey(opts: {
    user?: UserRecord | null;
    reusable?: boolean;
    ephemeral?: boolean;
    tags?: string[];
    expiration?: Date | null;
  }): Promise<string>;
  /** A client connection as if Noise had authenticated `machineKey`. */
  connect(machineKey: MachineKey, capVersion?: number): ControlClient;
  close(): Promise<void>;
}

export async function startTestControl(opts: {
  configYaml?: string;
  /** Adjusts the parsed config (e.g. values validation would refuse, for fast tests). */
  configure?: (config: Config) => void;
  /** Defaults to a silent logger. */
  log?: Logger;
  tuning?: ControlPlaneDeps["tuning"] & { batchDelayMs?: number };
  policy?: PolicyView;
  debugDumpMapResponsePath?: string;
  /** With `oidc.*` in the config: the OIDC client its logins use. */
  oidc?: ControlPlaneDeps["oidc"];
} = {}): Promise<TestControl> {
  const { config } = parseConfigText(opts.configYaml ?? "", { env: {} });
  opts.configure?.(config);
  const log = opts.log ?? silentLogger();
  const store = await openStore({
    type: "sqlite",
    sqlite: { path: ":memory:", writeAheadLog: false },
  });
  const state = await State.open({ store, log, config });
  // The same pipeline as server.ts, without a policy manager.
  const mapper = new Mapper({ state, config, policy: opts.policy, derpMap: () => TEST_DERP_MAP });
  const notifier = new Notifier({
    state,
    mapper,
    log,
    batchDelayMs: opts.tuning?.batchDelayMs ?? 5,
  });
  const unsubscribe = state.subscribe((changes) => {
    mapper.apply(changes);
    notifier.apply(changes);
  });
  const ephemeral = new EphemeralGc({
    state,
    timeoutMs: config.node.ephemeralInactivityTimeoutMs,
    log,
  });
  ephemeral.start();
  const control = createControlPlane({
    state,
    config,
    log,
    mapper,
    notifier,
    ephemeral,
    debugDumpMapResponsePath: opts.debugDumpMapResponsePath,
    tuning: opts.tuning,
    oidc: opts.oidc,
  });
  const clients: ControlClient[] = [];
  return {
    store,
    state,
    config,
    control,
    mapper,
    notifier,
    setPolicy(policy) {
      mapper.setPolicy(policy);
      control.policyChanged();
      state.announce({ kind: "policy-changed" });
    },
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
      unsubscribe();
      ephemeral.close();
      notifier.close();
      await control.close();
      await state.close();
      await store.close();
    },
  };
}
