import assert from "node:assert/strict";
import { createServer } from "node:http";
import { join } from "node:path";
import { silentLogger } from "../lib/log/log.ts";
import {
  decodeDerpMap,
  DerpMapError,
  DerpMapSource,
  embeddedDerpRegion,
  mergeDerpMaps,
  parseDerpMapText,
} from "../lib/derp/derp_map.ts";
import type { DERPMap } from "../lib/tailcfg/types.ts";

Deno.test("derp map: the embedded region serializes exactly as tailcfg does", () => {
  const region = embeddedDerpRegion({
    regionId: 999,
    regionCode: "headscale",
    regionName: "Headscale Embedded DERP",
    hostName: "hs.example.com",
    ipv4: "198.51.100.1",
    ipv6: "",
    derpPort: 443,
    stunPort: 3478,
  });
  assert.equal(
    JSON.stringify(region),
    '{"RegionID":999,"RegionCode":"headscale","RegionName":"Headscale Embedded DERP",' +
      '"Nodes":[{"Name":"999","RegionID":999,"HostName":"hs.example.com",' +
      '"IPv4":"198.51.100.1","STUNPort":3478,"DERPPort":443}]}',
  );
  const test = embeddedDerpRegion({
    regionId: 900,
    regionCode: "t",
    regionName: "T",
    hostName: "127.0.0.1",
    ipv4: "127.0.0.1",
    ipv6: "none",
    derpPort: 8080,
    stunPort: -1,
    insecureForTests: true,
  });
  assert.deepEqual(test.Nodes[0], {
    Name: "900",
    RegionID: 900,
    HostName: "127.0.0.1",
    IPv4: "127.0.0.1",
    IPv6: "none",
    STUNPort: -1,
    DERPPort: 8080,
    InsecureForTests: true,
  });
  assert.throws(
    () => embeddedDerpRegion({ ...test, regionId: 0 } as never),
    DerpMapError,
  );
  const v6 = embeddedDerpRegion({
    regionId: 999,
    regionCode: "h",
    regionName: "H",
    hostName: "[2001:db8::5]",
    derpPort: 8443,
    stunPort: 3478,
  });
  assert.equal(v6.Nodes[0].HostName, "2001:db8::5", "brackets from URL.hostname are dropped");
});

const HEADSCALE_YAML = `
regions:
  1: null # Disable DERP region with ID 1
  900:
    regionid: 900
    regioncode: custom
    regionname: My Region
    nodes:
      - name: 900a
        regionid: 900
        hostname: myderp.example.com
        ipv4: 198.51.100.1
        ipv6: 2001:db8::1
        stunport: 0
        stunonly: false
        derpport: 0
`;

const TAILCFG_JSON = JSON.stringify({
  Regions: {
    "900": {
      RegionID: 900,
      RegionCode: "custom",
      RegionName: "My Region",
      Nodes: [{
        Name: "900a",
        RegionID: 900,
        HostName: "myderp.example.com",
        IPv4: "198.51.100.1",
        IPv6: "2001:db8::1",
      }],
    },
  },
});

Deno.test("derp map: headscale's lower-case YAML and tailcfg JSON decode alike", () => {
  const yaml = parseDerpMapText(HEADSCALE_YAML, "derp.yaml");
  const json = parseDerpMapText(TAILCFG_JSON, "derp.json");
  assert.equal(yaml.Regions["1"], null);
  assert.deepEqual(yaml.Regions["900"], json.Regions["900"]);
  assert.equal(
    JSON.stringify(json.Regions["900"]!.Nodes[0]),
    '{"Name":"900a","RegionID":900,"HostName":"myderp.example.com",' +
      '"IPv4":"198.51.100.1","IPv6":"2001:db8::1"}',
  );
  // RegionID may be left out: the map key provides it, for regions and nodes.
  const short = decodeDerpMap(
    { regions: { "7": { nodes: [{ name: "7a", hostname: "d7.example.com" }] } } },
    "x",
  );
  assert.equal(short.Regions["7"]!.RegionID, 7);
  assert.equal(short.Regions["7"]!.Nodes[0].RegionID, 7);
});

Deno.test("derp map: bad input is refused with the path of the problem", () => {
  const cases: [unknown, RegExp][] = [
    [{ regions: { abc: {} } }, /regions\.abc: region id must be a positive integer/],
    [{ regions: { "0": {} } }, /regions\.0: region id/],
    [{ regions: { "5": { regionid: 6 } } }, /regions\.5\.regionid: 6 does not match/],
    [{ regions: { "5": { nodes: {} } } }, /regions\.5\.nodes: expected a list/],
    [
      { regions: { "5": { nodes: [{ hostname: "h", stunport: "3478" }] } } },
      /regions\.5\.nodes\[0\]\.stunport: expected an integer/,
    ],
    [
      { regions: { "5": { nodes: [{ name: "5a" }] } } },
      /regions\.5\.nodes\[0\]\.hostname: required/,
    ],
    [
      { regions: { "5": { nodes: [{ hostname: "h", derpport: 70000 }] } } },
      /derpport: 70000 is not a port/,
    ],
    [
      { regions: { "5": { nodes: [{ hostname: "h", regionid: 4 }] } } },
      /does not match its region/,
    ],
    [[], /expected an object/],
  ];
  for (const [value, want] of cases) {
    assert.throws(() => decodeDerpMap(value, "m.yaml"), (e: Error) => {
      assert.ok(e instanceof DerpMapError);
      assert.match(e.message, want);
      assert.match(e.message, /^m\.yaml/);
      return true;
    });
  }
  assert.throws(() => parseDerpMapText("regions: [unclosed", "f.yaml"), /f\.yaml: not valid YAML/);
});

function region(id: number, host: string) {
  return {
    RegionID: id,
    RegionCode: `r${id}`,
    RegionName: `Region ${id}`,
    Nodes: [{ Name: `${id}a`, RegionID: id, HostName: host }],
  };
}

Deno.test("derp map: merging lets later maps replace and null remove regions", () => {
  const a: DERPMap = {
    Regions: { "1": region(1, "a1"), "2": region(2, "a2") },
    HomeParams: { RegionScore: { "1": 2 } },
  };
  const b: DERPMap = { Regions: { "2": region(2, "b2"), "1": null, "10": region(10, "b10") } };
  const merged = mergeDerpMaps([a, b]);
  assert.deepEqual(Object.keys(merged.Regions), ["2", "10"]);
  assert.equal(merged.Regions["2"]!.Nodes[0].HostName, "b2");
  assert.deepEqual(merged.HomeParams, { RegionScore: { "1": 2 } });
  // The result shares nothing with its inputs.
  merged.Regions["2"]!.Nodes[0].HostName = "changed";
  assert.equal(b.Regions["2"]!.Nodes[0].HostName, "b2");
});

Deno.test("derp map: URL refresh keeps the last good map and says why", async () => {
  let reply: { status: number; body: string } = {
    status: 200,
    body: JSON.stringify({ Regions: { "1": region(1, "derp1.example.com") } }),
  };
  const http = createServer((_req, res) => {
    res.writeHead(reply.status, { "content-type": "application/json", connection: "close" });
    res.end(reply.body);
  });
  await new Promise<void>((r) => http.listen(0, "127.0.0.1", r));
  const url = `http://127.0.0.1:${(http.address() as { port: number }).port}/derpmap/default`;
  const dir = await Deno.makeTempDir();
  const path = join(dir, "derp.yaml");
  await Deno.writeTextFile(
    path,
    "regions:\n  1: null\n  900:\n    nodes:\n      - name: a\n        hostname: mine.example.com\n",
  );
  let fetches = 0;
  const source = new DerpMapSource({
    urls: [url],
    paths: [path],
    embeddedRegion: embeddedDerpRegion({
      regionId: 999,
      regionCode: "headscale",
      regionName: "Embedded",
      hostName: "hs.example.com",
      derpPort: 443,
      stunPort: 3478,
    }),
    fetch: (input, init) => {
      fetches++;
      return fetch(input, init);
    },
    log: silentLogger(),
  });
  try {
    // The file removes region 1 from the URL's map and adds 900; the embedded region comes last.
    const first = await source.refresh();
    assert.deepEqual(first.errors, []);
    assert.equal(first.changed, true);
    assert.deepEqual(Object.keys(first.map.Regions), ["900", "999"]);

    await Deno.writeTextFile(
      path,
      "regions:\n  900:\n    nodes:\n      - name: a\n        hostname: mine.example.com\n",
    );
    const good = await source.refresh();
    assert.deepEqual(Object.keys(good.map.Regions), ["1", "900", "999"]);
    assert.equal(good.map.Regions["1"]!.Nodes[0].HostName, "derp1.example.com");

    for (const bad of [{ status: 500, body: "oops" }, { status: 200, body: "{not json" }]) {
      reply = bad;
      const r = await source.refresh();
      assert.equal(r.changed, false, `unchanged after ${bad.body}`);
      assert.equal(r.map.Regions["1"]!.Nodes[0].HostName, "derp1.example.com");
      assert.equal(r.errors.length, 1);
      assert.equal(r.errors[0].source, url);
      assert.equal(r.errors[0].usingLastGood, true);
      assert.match(r.errors[0].message, bad.status === 500 ? /HTTP 500/ : /not JSON/);
    }
    // A broken file keeps its last good copy too.
    await Deno.writeTextFile(path, "regions:\n  900: [oops");
    reply = {
      status: 200,
      body: JSON.stringify({ Regions: { "1": region(1, "derp1b.example.com") } }),
    };
    const mixed = await source.refresh();
    assert.equal(mixed.changed, true);
    assert.equal(mixed.map.Regions["1"]!.Nodes[0].HostName, "derp1b.example.com");
    assert.ok(mixed.map.Regions["900"], "file's last good map still applied");
    assert.deepEqual(mixed.errors.map((e) => [e.source, e.usingLastGood]), [[path, true]]);
    assert.deepEqual(source.current(), mixed.map);
    assert.ok(source.hostNames().includes("derp1b.example.com"));
    assert.equal(fetches, 5);
  } finally {
    await new Promise<void>((r) => http.close(() => r()));
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("derp map: a source that never loaded is reported without a last good copy", async () => {
  const source = new DerpMapSource({
    urls: ["http://derp-map.invalid/map.json"],
    paths: ["/nonexistent/derp.yaml"],
    fetch: () => Promise.reject(new TypeError("connection refused")),
    log: silentLogger(),
  });
  const r = await source.refresh();
  assert.deepEqual(r.map, { Regions: {} });
  assert.deepEqual(r.errors.map((e) => e.usingLastGood), [false, false]);
  assert.match(r.errors[0].message, /connection refused/);
  assert.match(r.errors[1].message, /\/nonexistent\/derp\.yaml: cannot read/);
});

Deno.test("derp map: start() refreshes periodically and reports changes", async () => {
  let hostName = "one.example.com";
  const source = new DerpMapSource({
    urls: [],
    paths: ["mem.yaml"],
    readTextFile: () =>
      Promise.resolve(
        `regions:\n  5:\n    nodes:\n      - name: a\n        hostname: ${hostName}\n`,
      ),
    log: silentLogger(),
  });
  await source.refresh();
  const changes: string[] = [];
  const changed = new Promise<void>((resolve) => {
    source.start(20, (m) => {
      changes.push(m.Regions["5"]!.Nodes[0].HostName);
      resolve();
    });
  });
  hostName = "two.example.com";
  await changed;
  source.stop();
  assert.deepEqual(changes, ["two.example.com"]);
});
