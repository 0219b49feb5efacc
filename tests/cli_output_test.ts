import assert from "node:assert/strict";
import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { NodeSchema } from "../gen/headscale/v1/node_pb.ts";
import { PreAuthKeySchema } from "../gen/headscale/v1/preauthkey_pb.ts";
import { UserSchema } from "../gen/headscale/v1/user_pb.ts";
import { nodesTable, routesTable } from "../lib/cli/commands/nodes.ts";
import {
  ansiStyle,
  chooseStyle,
  formatDate,
  formatError,
  formatExpiry,
  messageJson,
  plainStyle,
  renderTable,
  serialize,
  shortKey,
} from "../lib/cli/output.ts";
import { parse as parseYaml } from "yaml";

Deno.test("cli output: tables align columns and spread multi-line cells over lines", () => {
  const text = renderTable([
    ["ID", "Name", "Tags"],
    ["1", "alpha", "tag:a\ntag:bb"],
    ["10", "b", ""],
  ]);
  assert.equal(
    text,
    [
      "ID | Name  | Tags",
      "1  | alpha | tag:a",
      "   |       | tag:bb",
      "10 | b     |",
    ].join("\n"),
  );
  assert.equal(renderTable([["ID", "Name"]]), "ID | Name", "an empty list still has its header");
});

Deno.test("cli output: colour codes do not disturb alignment and only reach terminals", () => {
  const text = renderTable([["A", "B"], [ansiStyle.good("yes"), "x"], ["no", "y"]], plainStyle);
  const lines = text.split("\n").map((l) =>
    l.replace(new RegExp(String.fromCharCode(27) + "\\[[0-9;]*m", "g"), "")
  );
  assert.deepEqual(lines, ["A   | B", "yes | x", "no  | y"]);
  assert.equal(chooseStyle(false, {}), plainStyle);
  assert.equal(chooseStyle(true, { NO_COLOR: "1" }), plainStyle);
  assert.equal(chooseStyle(true, {}), ansiStyle);
});

Deno.test("cli output: json, json-line and yaml render the same data", () => {
  const data = [{ id: "1", name: "alice", tags: ["tag:a"] }];
  assert.equal(
    serialize(data, "json"),
    '[\n\t{\n\t\t"id": "1",\n\t\t"name": "alice",\n\t\t"tags": [\n\t\t\t"tag:a"\n\t\t]\n\t}\n]',
  );
  assert.equal(serialize(data, "json-line"), JSON.stringify(data));
  assert.deepEqual(parseYaml(serialize(data, "yaml")), data);
});

Deno.test("cli output: messages are protojson as the REST API shows them", () => {
  const user = create(UserSchema, {
    id: 3n,
    name: "alice",
    createdAt: timestampFromDate(new Date("2025-01-02T03:04:05Z")),
  });
  assert.deepEqual(messageJson(UserSchema, user), {
    id: "3",
    name: "alice",
    createdAt: "2025-01-02T03:04:05Z",
    displayName: "",
    email: "",
    providerId: "",
    provider: "",
    profilePicUrl: "",
  });
  const key = messageJson(PreAuthKeySchema, create(PreAuthKeySchema, { id: 1n }));
  assert.deepEqual((key as Record<string, unknown>).aclTags, [], "empty lists are present");
});

Deno.test("cli output: errors are one line, or one object for machine formats", () => {
  assert.equal(formatError("listing users: boom", [], ""), "Error: listing users: boom");
  assert.equal(formatError("bad", [], "json-line"), '{"error":"bad"}');
  assert.deepEqual(JSON.parse(formatError("bad", [], "json")), { error: "bad" });
  assert.deepEqual(parseYaml(formatError("bad", ["a", "b"], "yaml")), {
    error: "bad",
    details: ["a", "b"],
  });
  assert.equal(formatError("2 problems", ["a", "b"], ""), "Error: 2 problems\n  - a\n  - b");
});

Deno.test("cli output: times, expiries and short keys as headscale prints them", () => {
  assert.equal(formatDate(new Date("2025-08-27T10:00:00.123Z")), "2025-08-27 10:00:00");
  const now = new Date("2025-01-01T00:00:00Z");
  const past = timestampFromDate(new Date("2024-12-31T00:00:00Z"));
  const future = timestampFromDate(new Date("2025-01-02T00:00:00Z"));
  assert.equal(formatExpiry(undefined, now, plainStyle), "-");
  assert.equal(formatExpiry(past, now, ansiStyle), ansiStyle.bad("2024-12-31 00:00:00"));
  assert.equal(formatExpiry(future, now, ansiStyle), ansiStyle.good("2025-01-02 00:00:00"));

  // base64 of 0x01 0x02 0x03 0x04 ... starts "AQIDB".
  const hex = "0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20";
  assert.equal(shortKey(`nodekey:${hex}`), "[AQIDB]");
  assert.equal(shortKey(`mkey:${hex}`), "[AQIDB]");
  assert.equal(shortKey(`mkey:${"0".repeat(64)}`), "", "the zero key has no short form");
  assert.equal(shortKey("garbage"), "");
});

Deno.test("cli output: node and route tables use headscale's columns", () => {
  const now = new Date("2025-06-01T00:00:00Z");
  const node = create(NodeSchema, {
    id: 5n,
    name: "laptop",
    givenName: "laptop-1",
    nodeKey: "nodekey:" + "01".repeat(32),
    user: { name: "alice" },
    tags: ["tag:a", "tag:b"],
    ipAddresses: ["100.64.0.5", "fd7a:115c:a1e0::5"],
    online: true,
    expiry: timestampFromDate(new Date("2025-05-01T00:00:00Z")),
    approvedRoutes: ["10.0.0.0/8"],
    availableRoutes: ["10.0.0.0/8", "192.168.0.0/24"],
    subnetRoutes: ["10.0.0.0/8"],
  });
  const lines = nodesTable([node], now, plainStyle).split("\n");
  assert.match(
    lines[0],
    /^ID \| Hostname \| Name +\| MachineKey \| NodeKey +\| User +\| Tags +\| IP addresses +\| Ephemeral \| Last seen \| Expiration +\| Connected \| Expired$/,
  );
  assert.match(
    lines[1],
    /^5 +\| laptop +\| laptop-1 \| +\| \[AQEBA\] \| alice \| tag:a \| 100\.64\.0\.5 +\| false +\| +\| 2025-05-01 00:00:00 \| online +\| yes$/,
  );
  assert.match(lines[2], /\| tag:b \| fd7a:115c:a1e0::5 \|/);
  const routes = routesTable([node], plainStyle).split("\n");
  assert.match(routes[0], /^ID \| Hostname \| Approved +\| Available +\| Serving \(Primary\)$/);
  assert.match(
    routes[1],
    /^5 +\| laptop-1 \| 10\.0\.0\.0\/8 \| 10\.0\.0\.0\/8 +\| 10\.0\.0\.0\/8$/,
  );
  assert.match(routes[2], /\| 192\.168\.0\.0\/24 \|$/);
});
