/**
 * Hostinfo.RequestTags (`tailscale up --advertise-tags`) at registration, as headscale v0.29.2
 * treats them: refused with a pre-auth key that creates a node, granted by tagOwners to the user
 * an interactive login is registered for, re-checked on re-authentication.
 */
import assert from "node:assert/strict";
import type { MachineKey } from "../lib/tailcfg/keys.ts";
import { randomKey, startTestControl, type TestControl } from "./helpers/control.ts";
import { policyEngineView } from "../lib/mapper/policy_engine_view.ts";
import { parsePolicy, PolicyEngine } from "../lib/policy/mod.ts";
import { TAGGED_DEVICES_USER_ID } from "../lib/mapper/users.ts";
import type { RegisterResponse } from "../lib/tailcfg/types.ts";
import type { UserRecord } from "../lib/store/types.ts";

const ZERO_NODEKEY = "nodekey:" + "0".repeat(64);
const DAY_MS = 86_400_000;

const POLICY = {
  groups: { "group:ops": ["bob@"] },
  tagOwners: {
    "tag:server": ["alice@"],
    "tag:web": ["alice@"],
    "tag:db": ["group:ops"],
  },
};

function body(nodeKey: string, requestTags: string[] | undefined, extra = {}) {
  return {
    Version: 130,
    NodeKey: nodeKey,
    OldNodeKey: ZERO_NODEKEY,
    Expiry: "0001-01-01T00:00:00Z",
    Followup: "",
    Hostinfo: { Hostname: "box", OS: "linux", RequestTags: requestTags },
    ...extra,
  };
}

async function register(t: TestControl, machineKey: MachineKey, b: unknown) {
  const reply = await t.connect(machineKey).register(b as Record<string, unknown>);
  return { status: reply.status, json: JSON.parse(reply.text) as RegisterResponse };
}

interface World {
  t: TestControl;
  alice: UserRecord;
  bob: UserRecord;
}

/** A control plane with users alice and bob and, unless `policy` is null, POLICY in force. */
async function withWorld(
  fn: (w: World) => Promise<void>,
  opts: { policy?: Record<string, unknown> | null; followupWaitMs?: number } = {},
) {
  const t = await startTestControl({
    configure: (c) => c.node.expiryMs = DAY_MS,
    tuning: { followupWaitMs: opts.followupWaitMs },
  });
  try {
    const alice = await t.user("alice");
    const bob = await t.user("bob");
    const policy = opts.policy === undefined ? POLICY : opts.policy;
    if (policy) {
      const engine = new PolicyEngine(
        parsePolicy(JSON.stringify(policy)),
        [alice, bob].map((u) => ({ id: u.id, name: u.name })),
        [],
      );
      t.setPolicy(policyEngineView(engine));
    }
    await fn({ t, alice, bob });
  } finally {
    await t.close();
  }
}

/** Starts an interactive login; returns its auth id and AuthURL. */
async function startLogin(
  t: TestControl,
  mkey: MachineKey,
  nkey: string,
  tags: string[] | undefined,
  extra = {},
) {
  const r = await register(t, mkey, body(nkey, tags, extra));
  assert.match(r.json.AuthURL, /\/register\//);
  return { id: r.json.AuthURL.split("/").pop()!, url: r.json.AuthURL };
}

Deno.test("register tags: a pre-auth key creating a node refuses RequestTags with headscale's Error", async () => {
  await withWorld(async ({ t, alice }) => {
    const key = await t.authKey({ user: alice });
    const tagged = await t.authKey({ user: null, tags: ["tag:server"] });
    for (const k of [key, tagged]) {
      const r = await register(
        t,
        randomKey("mkey:"),
        body(randomKey("nodekey:"), ["tag:server", "tag:x"], { Auth: { AuthKey: k } }),
      );
      assert.equal(r.status, 200);
      assert.equal(
        r.json.Error,
        "handling register with auth key: requested tags [tag:server tag:x] are invalid or not permitted",
      );
      assert.equal(r.json.MachineAuthorized, false);
    }
    assert.equal(t.state.nodeCount, 0);
    // The refused single-use key was not spent.
    const ok = await register(
      t,
      randomKey("mkey:"),
      body(randomKey("nodekey:"), [], { Auth: { AuthKey: key } }),
    );
    assert.equal(ok.json.MachineAuthorized, true);
  });
});

Deno.test("register tags: a pre-auth key re-registering its machine ignores RequestTags", async () => {
  await withWorld(async ({ t, alice }) => {
    const key = await t.authKey({ user: alice, reusable: true });
    const mkey = randomKey("mkey:");
    const nkey = randomKey("nodekey:");
    await register(t, mkey, body(nkey, undefined, { Auth: { AuthKey: key } }));
    const again = await register(
      t,
      mkey,
      body(nkey, ["tag:server"], { Auth: { AuthKey: key } }),
    );
    assert.equal(again.json.MachineAuthorized, true);
    assert.equal(again.json.Error ?? "", "");
    const node = t.state.nodeByNodeKey(nkey)!;
    assert.equal(node.userId, alice.id);
    assert.deepEqual(node.tags, []);
  });
});

Deno.test("register tags: auth register --user grants owned tags (sorted, deduplicated, no user, no expiry)", async () => {
  await withWorld(async ({ t, alice }) => {
    const mkey = randomKey("mkey:");
    const nkey = randomKey("nodekey:");
    const { id, url } = await startLogin(t, mkey, nkey, ["tag:web", "tag:server", "tag:web"]);
    const followup = register(t, mkey, body(nkey, ["tag:web", "tag:server"], { Followup: url }));
    const node = await t.control.authRequests.register(id, alice.id);
    assert.deepEqual(node.tags, ["tag:server", "tag:web"]);
    assert.equal(node.userId, null);
    assert.equal(node.expiry, null);
    assert.equal(node.registerMethod, "cli");
    const done = await followup;
    assert.equal(done.json.MachineAuthorized, true);
    assert.equal(done.json.User.ID, TAGGED_DEVICES_USER_ID);
  });
});

Deno.test("register tags: tags the user does not own are refused by name; the client keeps waiting", async () => {
  await withWorld(async ({ t, alice, bob }) => {
    const mkey = randomKey("mkey:");
    const nkey = randomKey("nodekey:");
    const { id, url } = await startLogin(t, mkey, nkey, ["tag:server", "tag:db"]);
    await assert.rejects(
      t.control.authRequests.register(id, alice.id),
      (e: Error) => {
        assert.equal(e.name, "InvalidArgumentError");
        assert.equal(
          e.message,
          'requested tags [tag:db] are invalid or not permitted: the policy\'s tagOwners do not give them to user "alice"',
        );
        return true;
      },
    );
    await assert.rejects(
      t.control.authRequests.register(id, bob.id),
      /requested tags \[tag:server\] are invalid or not permitted.*"bob"/,
    );
    assert.equal(t.state.nodeCount, 0);
    // As in headscale, the login stays pending: the client's Followup is still told to wait.
    assert.equal(t.control.authRequests.list()[0].status, "pending");
    const waiting = await register(
      t,
      mkey,
      body(nkey, ["tag:server", "tag:db"], { Followup: url }),
    );
    assert.equal(waiting.json.AuthURL, url);
    assert.equal(waiting.json.MachineAuthorized, false);
    // The admin can still turn it down, and the client hears it.
    const followup = register(t, mkey, body(nkey, ["tag:server", "tag:db"], { Followup: url }));
    await t.control.authRequests.reject(id);
    assert.match((await followup).json.Error!, /rejected/);
  }, { followupWaitMs: 100 });
});

Deno.test("register tags: without a policy no tag can be requested; without RequestTags the user owns it", async () => {
  await withWorld(async ({ t, alice }) => {
    const first = await startLogin(t, randomKey("mkey:"), randomKey("nodekey:"), ["tag:server"]);
    await assert.rejects(
      t.control.authRequests.register(first.id, alice.id),
      /requested tags \[tag:server\] are invalid or not permitted/,
    );
    const plain = await startLogin(t, randomKey("mkey:"), randomKey("nodekey:"), []);
    const node = await t.control.authRequests.register(plain.id, alice.id);
    assert.equal(node.userId, alice.id);
    assert.deepEqual(node.tags, []);
    assert.ok(node.expiry && node.expiry.getTime() > Date.now());
  }, { policy: null });
});

Deno.test("register tags: re-login for a user: no RequestTags brings a tagged node back to the user", async () => {
  await withWorld(async ({ t, alice, bob }) => {
    const mkey = randomKey("mkey:");
    const k1 = randomKey("nodekey:");
    const a = await startLogin(t, mkey, k1, ["tag:server"]);
    const tagged = await t.control.authRequests.register(a.id, alice.id);
    assert.deepEqual(tagged.tags, ["tag:server"]);

    // --force-reauth without --advertise-tags, registered for bob.
    const k2 = randomKey("nodekey:");
    const b = await startLogin(t, mkey, k2, undefined, { OldNodeKey: k1 });
    const mine = await t.control.authRequests.register(b.id, bob.id);
    assert.equal(mine.id, tagged.id);
    assert.equal(mine.userId, bob.id);
    assert.deepEqual(mine.tags, []);
    assert.ok(mine.expiry && mine.expiry.getTime() > Date.now());

    // Re-login asking for a tag bob owns, then one he does not.
    const k3 = randomKey("nodekey:");
    const c = await startLogin(t, mkey, k3, ["tag:db"], { OldNodeKey: k2 });
    const db = await t.control.authRequests.register(c.id, bob.id);
    assert.deepEqual(db.tags, ["tag:db"]);
    assert.equal(db.userId, null);
    assert.equal(db.expiry, null);
    const k4 = randomKey("nodekey:");
    const d = await startLogin(t, mkey, k4, ["tag:web"], { OldNodeKey: k3 });
    await assert.rejects(
      t.control.authRequests.register(d.id, bob.id),
      /requested tags \[tag:web\]/,
    );
    assert.deepEqual(t.state.getNode(db.id)!.tags, ["tag:db"]);
    assert.equal(t.state.getNode(db.id)!.nodeKey, k3);
  });
});

Deno.test("register tags: approving a user's re-login checks RequestTags against that user", async () => {
  await withWorld(async ({ t, alice }) => {
    const mkey = randomKey("mkey:");
    const k1 = randomKey("nodekey:");
    const first = await startLogin(t, mkey, k1, undefined);
    const node = await t.control.authRequests.register(first.id, alice.id);

    const k2 = randomKey("nodekey:");
    const refused = await startLogin(t, mkey, k2, ["tag:db"], { OldNodeKey: k1 });
    await assert.rejects(
      t.control.authRequests.approve(refused.id),
      /requested tags \[tag:db\] are invalid or not permitted.*"alice"/,
    );
    assert.equal(t.state.getNode(node.id)!.userId, alice.id);
    await t.control.authRequests.reject(refused.id);

    const k3 = randomKey("nodekey:");
    const ok = await startLogin(t, mkey, k3, ["tag:server"], { OldNodeKey: k1 });
    const tagged = (await t.control.authRequests.approve(ok.id))!;
    assert.equal(tagged.id, node.id);
    assert.deepEqual(tagged.tags, ["tag:server"]);
    assert.equal(tagged.userId, null);
    assert.equal(tagged.expiry, null);
  });
});

Deno.test("register tags: approving a tagged node's re-login keeps its tags and grants none", async () => {
  await withWorld(async ({ t, alice }) => {
    const mkey = randomKey("mkey:");
    const k1 = randomKey("nodekey:");
    const first = await startLogin(t, mkey, k1, ["tag:server", "tag:web"]);
    const node = await t.control.authRequests.register(first.id, alice.id);

    // Asking for a tag the node does not hold: nobody to vouch for it.
    const k2 = randomKey("nodekey:");
    const more = await startLogin(t, mkey, k2, ["tag:server", "tag:db"], { OldNodeKey: k1 });
    await assert.rejects(
      t.control.authRequests.approve(more.id),
      /requested tags \[tag:db\] are invalid or not permitted: this tagged node .*auth register --user/,
    );
    await t.control.authRequests.reject(more.id);

    // A subset of what it holds is fine.
    const k3 = randomKey("nodekey:");
    const fewer = await startLogin(t, mkey, k3, ["tag:web"], { OldNodeKey: k1 });
    assert.deepEqual((await t.control.authRequests.approve(fewer.id))!.tags, ["tag:web"]);

    // No RequestTags: approval keeps the owner, i.e. the tags.
    const k4 = randomKey("nodekey:");
    const none = await startLogin(t, mkey, k4, undefined, { OldNodeKey: k3 });
    const kept = (await t.control.authRequests.approve(none.id))!;
    assert.equal(kept.id, node.id);
    assert.deepEqual(kept.tags, ["tag:web"]);
    assert.equal(kept.userId, null);
  });
});
