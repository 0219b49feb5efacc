// One connectNodeAdapter handler, served by lib/api/transport over a unix socket (h2c and
// HTTP/1.1 on the same socket) and over TLS (h2 by ALPN, and HTTP/1.1), called with gRPC,
// gRPC-Web and Connect clients. The service is a two-RPC fake backed by an array.
import assert from "node:assert/strict";
import http from "node:http";
import http2 from "node:http2";
import net from "node:net";
import tls from "node:tls";
import { Buffer } from "node:buffer";
import { PassThrough } from "node:stream";
import { join } from "node:path";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { timestampNow } from "@bufbuild/protobuf/wkt";
import {
  Code,
  ConnectError,
  type ConnectRouter,
  createClient,
  type Interceptor,
  type Transport,
} from "@connectrpc/connect";
import {
  connectNodeAdapter,
  createConnectTransport,
  createGrpcTransport,
  createGrpcWebTransport,
} from "@connectrpc/connect-node";
import { HeadscaleService } from "../gen/headscale/v1/headscale_pb.ts";
import {
  ListUsersRequestSchema,
  ListUsersResponseSchema,
  type User,
  UserSchema,
} from "../gen/headscale/v1/user_pb.ts";
import {
  type ApiRequestHandler,
  classifyPrefix,
  HTTP2_CLIENT_PREFACE,
  isValidAuthority,
  PrefaceError,
  serveCleartextTcp,
  serveTls,
  serveUnixSocket,
  sniffProtocol,
} from "../lib/api/transport/mod.ts";

// Connect-node clients keep HTTP/2 sessions and timers that outlive a single test body; each
// test closes its listener (which drops every connection) instead.
const leaky = { sanitizeOps: false, sanitizeResources: false };

/** ListUsers and CreateUser over an in-memory array; the other RPCs answer Unimplemented. */
function fakeUserService(initial: string[] = ["alice"]) {
  const users: User[] = initial.map((name, i) =>
    create(UserSchema, { id: BigInt(i + 1), name, createdAt: timestampNow() })
  );
  const seenAuthorization: (string | null)[] = [];
  const routes = (router: ConnectRouter) =>
    router.service(HeadscaleService, {
      listUsers(request, context) {
        seenAuthorization.push(context.requestHeader.get("authorization"));
        return { users: users.filter((u) => request.name === "" || u.name === request.name) };
      },
      createUser(request) {
        if (request.name === "") {
          throw new ConnectError("name is required", Code.InvalidArgument);
        }
        if (users.some((u) => u.name === request.name)) {
          throw new ConnectError(`user ${request.name} exists`, Code.AlreadyExists);
        }
        const user = create(UserSchema, {
          id: BigInt(users.length + 1),
          name: request.name,
          createdAt: timestampNow(),
        });
        users.push(user);
        return { user };
      },
    });
  return { users, seenAuthorization, routes };
}

const requireBearer = (token: string): Interceptor => (next) => (request) => {
  if (request.header.get("authorization") !== `Bearer ${token}`) {
    throw new ConnectError("invalid API key", Code.Unauthenticated);
  }
  return next(request);
};

async function withTempDir<T>(fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = await Deno.makeTempDir({ prefix: "headscale-transport-" });
  try {
    return await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** Exercises ListUsers/CreateUser through `transport`; `label` names the client in failures. */
async function roundTrip(transport: Transport, label: string, newUser: string): Promise<void> {
  try {
    await roundTripSteps(transport, label, newUser);
  } catch (error) {
    throw new Error(`${label}: ${error instanceof Error ? error.stack : error}`);
  }
}

async function roundTripSteps(transport: Transport, label: string, newUser: string) {
  const client = createClient(HeadscaleService, transport);
  const before = await client.listUsers({});
  assert.ok(before.users.some((u) => u.name === "alice"), `${label}: alice listed`);
  const created = await client.createUser({ name: newUser });
  assert.equal(created.user?.name, newUser, `${label}: created user echoed`);
  const filtered = await client.listUsers({ name: newUser });
  assert.deepEqual(filtered.users.map((u) => u.name), [newUser], `${label}: filter by name`);
  await assert.rejects(
    client.createUser({ name: newUser }),
    (error: unknown) => ConnectError.from(error).code === Code.AlreadyExists,
    `${label}: error code travels back`,
  );
  const unimplemented = await client.listNodes({}).then(
    () => undefined,
    (error: unknown) => ConnectError.from(error).code,
  );
  assert.equal(unimplemented, Code.Unimplemented, `${label}: unimplemented RPC`);
}

/** h2 sessions dialled over a unix socket (connect-node takes node:http2 connect options). */
function unixH2Options(path: string): http2.ClientSessionOptions {
  return { createConnection: () => net.connect(path) };
}

/** A test CA and a server certificate for localhost/127.0.0.1 it signed (openssl CLI). */
async function testCertificates(dir: string): Promise<{ ca: string; cert: string; key: string }> {
  const file = (name: string) => join(dir, name);
  const ecKey = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "1"];
  await openssl([
    "req",
    "-x509",
    ...ecKey,
    "-subj",
    "/CN=test CA",
    "-keyout",
    file("ca.key"),
    "-out",
    file("ca.pem"),
  ]);
  await openssl([
    "req",
    "-x509",
    ...ecKey,
    "-subj",
    "/CN=localhost",
    "-addext",
    "subjectAltName=DNS:localhost,IP:127.0.0.1",
    "-addext",
    "basicConstraints=critical,CA:FALSE",
    "-CA",
    file("ca.pem"),
    "-CAkey",
    file("ca.key"),
    "-keyout",
    file("key.pem"),
    "-out",
    file("cert.pem"),
  ]);
  const [ca, cert, key] = await Promise.all(
    ["ca.pem", "cert.pem", "key.pem"].map((name) => Deno.readTextFile(file(name))),
  );
  return { ca, cert, key };
}

async function openssl(args: string[]): Promise<void> {
  const result = await new Deno.Command("openssl", { args, stdout: "null", stderr: "piped" })
    .output()
    .catch((error) => {
      throw new Error(`the openssl CLI is needed to make test certificates: ${error}`);
    });
  if (!result.success) {
    throw new Error(`openssl failed: ${new TextDecoder().decode(result.stderr)}`);
  }
}

/** A raw gRPC unary call over node:http2, so the test controls :authority and sees trailers. */
function rawGrpcCall(
  session: http2.ClientHttp2Session,
  authority: string,
  path: string,
  message: Uint8Array,
): Promise<
  { headers: http2.IncomingHttpHeaders; trailers: http2.IncomingHttpHeaders; body: Buffer }
> {
  return new Promise((resolve, reject) => {
    const stream = session.request({
      ":method": "POST",
      ":path": path,
      ":authority": authority,
      "content-type": "application/grpc",
      te: "trailers",
    });
    let headers: http2.IncomingHttpHeaders = {};
    let trailers: http2.IncomingHttpHeaders = {};
    const chunks: Buffer[] = [];
    stream.on("response", (h) => (headers = h));
    stream.on("trailers", (t) => (trailers = t));
    stream.on("data", (chunk: Buffer) => chunks.push(chunk));
    stream.on("end", () => resolve({ headers, trailers, body: Buffer.concat(chunks) }));
    stream.on("error", reject);
    const frame = Buffer.alloc(5 + message.length);
    frame.writeUInt32BE(message.length, 1);
    frame.set(message, 5);
    stream.end(frame);
  });
}

Deno.test("classifyPrefix tells the HTTP/2 preface from HTTP/1.1 at the first differing byte", () => {
  const preface = HTTP2_CLIENT_PREFACE;
  assert.equal(preface.length, 24);
  assert.equal(classifyPrefix(new Uint8Array()), undefined);
  assert.equal(classifyPrefix(preface.subarray(0, 3)), undefined);
  assert.equal(classifyPrefix(preface.subarray(0, 23)), undefined);
  assert.equal(classifyPrefix(preface), "h2");
  const withFrames = new Uint8Array([...preface, 0, 0, 0, 4]);
  assert.equal(classifyPrefix(withFrames), "h2");
  assert.equal(classifyPrefix(new TextEncoder().encode("GET / HTTP/1.1\r\n")), "http/1.1");
  assert.equal(classifyPrefix(new TextEncoder().encode("P")), undefined);
  assert.equal(classifyPrefix(new TextEncoder().encode("POST /x HTTP/1.1")), "http/1.1");
  assert.equal(classifyPrefix(new TextEncoder().encode("PRI * HTTP/1.1\r\n")), "http/1.1");
});

Deno.test("sniffProtocol waits for a preface split over many chunks and puts every byte back", async () => {
  const stream = new PassThrough();
  let decided: string | undefined;
  const sniffed = sniffProtocol(stream as unknown as net.Socket).then((p) => (decided = p));
  const trailing = new TextEncoder().encode("first frame bytes");
  for (let i = 0; i < HTTP2_CLIENT_PREFACE.length; i += 5) {
    assert.equal(decided, undefined, `undecided after ${i} bytes`);
    stream.write(HTTP2_CLIENT_PREFACE.subarray(i, i + 5));
    await new Promise((r) => setTimeout(r, 0));
  }
  stream.write(trailing);
  assert.equal(await sniffed, "h2");
  // Everything read while sniffing is readable again, in order, for the HTTP/2 server.
  stream.end();
  const replay: Buffer[] = [];
  for await (const chunk of stream) replay.push(chunk as Buffer);
  assert.deepEqual(
    new Uint8Array(Buffer.concat(replay)),
    new Uint8Array([...HTTP2_CLIENT_PREFACE, ...trailing]),
  );
});

Deno.test("sniffProtocol decides HTTP/1.1 on the first byte that differs from the preface", async () => {
  const stream = new PassThrough();
  const sniffed = sniffProtocol(stream as unknown as net.Socket);
  stream.write("PRI * HTTP/1.1\r\n");
  assert.equal(await sniffed, "http/1.1");
  assert.equal((stream.read() as Buffer).toString(), "PRI * HTTP/1.1\r\n");
});

Deno.test("sniffProtocol rejects a connection that closes or stays silent", async () => {
  const closing = new PassThrough();
  const early = sniffProtocol(closing as unknown as net.Socket);
  closing.end("PRI * HT");
  closing.resume();
  await assert.rejects(early, PrefaceError);

  const silent = new PassThrough();
  await assert.rejects(
    sniffProtocol(silent as unknown as net.Socket, { timeoutMs: 20 }),
    /no request within 20 ms/,
  );
});

Deno.test({
  name: "unix socket: gRPC over h2c, Connect over h2c and HTTP/1.1, gRPC-Web, all one handler",
  ...leaky,
  async fn() {
    await withTempDir(async (dir) => {
      const path = join(dir, "run", "headscale.sock");
      const service = fakeUserService();
      const errors: Error[] = [];
      const listener = await serveUnixSocket(connectNodeAdapter({ routes: service.routes }), {
        path,
        onConnectionError: (error) => errors.push(error),
      });
      try {
        assert.equal(listener.address, `unix:${path}`);
        assert.equal(listener.port, undefined);
        assert.equal((await Deno.lstat(path)).mode! & 0o777, 0o770);
        const baseUrl = "http://localhost";
        await roundTrip(
          createGrpcTransport({ baseUrl, nodeOptions: unixH2Options(path) }),
          "gRPC/h2c",
          "grpc-h2c",
        );
        await roundTrip(
          createConnectTransport({
            baseUrl,
            httpVersion: "2",
            nodeOptions: unixH2Options(path),
          }),
          "Connect/h2c",
          "connect-h2c",
        );
        await roundTrip(
          createConnectTransport({
            baseUrl,
            httpVersion: "1.1",
            nodeOptions: { socketPath: path },
          }),
          "Connect/HTTP1.1",
          "connect-h1",
        );
        await roundTrip(
          createConnectTransport({
            baseUrl,
            httpVersion: "1.1",
            useBinaryFormat: true,
            nodeOptions: { socketPath: path },
          }),
          "Connect+proto/HTTP1.1",
          "connect-proto-h1",
        );
        await roundTrip(
          createGrpcWebTransport({
            baseUrl,
            httpVersion: "1.1",
            nodeOptions: { socketPath: path },
          }),
          "gRPC-Web/HTTP1.1",
          "grpcweb-h1",
        );
        await roundTrip(
          createGrpcWebTransport({ baseUrl, httpVersion: "2", nodeOptions: unixH2Options(path) }),
          "gRPC-Web/h2c",
          "grpcweb-h2c",
        );
        assert.equal(service.users.length, 7);
      } finally {
        await listener.close();
      }
      await assert.rejects(Deno.lstat(path), Deno.errors.NotFound, "socket file removed");
    });
  },
});

Deno.test({
  name:
    "unix socket: grpc-go's percent-encoded socket path as :authority is served, trailers intact",
  ...leaky,
  async fn() {
    await withTempDir(async (dir) => {
      const path = join(dir, "headscale.sock");
      const service = fakeUserService(["alice", "bob"]);
      const listener = await serveUnixSocket(connectNodeAdapter({ routes: service.routes }), {
        path,
      });
      const session = http2.connect("http://localhost", unixH2Options(path));
      try {
        const request = toBinary(ListUsersRequestSchema, create(ListUsersRequestSchema, {}));
        // What grpc-go sends when dialled with a plain socket path (headscale's CLI does this).
        const authority = encodeURIComponent(path);
        assert.equal(isValidAuthority(authority), false);
        const reply = await rawGrpcCall(
          session,
          authority,
          "/headscale.v1.HeadscaleService/ListUsers",
          request,
        );
        assert.equal(reply.headers[":status"], 200);
        assert.equal(reply.headers["content-type"], "application/grpc+proto");
        assert.equal(reply.trailers["grpc-status"], "0", "grpc-status arrives as a trailer");
        assert.equal(reply.body[0], 0, "uncompressed frame");
        const length = reply.body.readUInt32BE(1);
        const response = fromBinary(ListUsersResponseSchema, reply.body.subarray(5, 5 + length));
        assert.deepEqual(response.users.map((u) => u.name), ["alice", "bob"]);

        const missing = await rawGrpcCall(session, "localhost", "/headscale.v1.Nope/Nope", request);
        assert.equal(missing.headers[":status"], 404, "unknown paths fall through to 404");
      } finally {
        session.destroy();
        await listener.close();
      }
    });
  },
});

Deno.test({
  name:
    "TLS: gRPC, gRPC-Web and Connect over h2 chosen by ALPN, Connect over HTTP/1.1, bearer token",
  ...leaky,
  async fn() {
    await withTempDir(async (dir) => {
      const { ca, cert, key } = await testCertificates(dir);
      const service = fakeUserService();
      const handler = connectNodeAdapter({
        routes: service.routes,
        interceptors: [requireBearer("s3cret")],
      });
      const listener = await serveTls(handler, { hostname: "127.0.0.1", port: 0, cert, key });
      try {
        assert.ok(listener.port! > 0);
        const baseUrl = `https://localhost:${listener.port}`;
        const bearer = (token: string): Interceptor => (next) => (request) => {
          request.header.set("authorization", `Bearer ${token}`);
          return next(request);
        };
        const withToken = { nodeOptions: { ca }, interceptors: [bearer("s3cret")] };
        await roundTrip(createGrpcTransport({ baseUrl, ...withToken }), "gRPC/TLS", "grpc-tls");
        await roundTrip(
          createGrpcWebTransport({ baseUrl, httpVersion: "2", ...withToken }),
          "gRPC-Web/TLS h2",
          "grpcweb-tls",
        );
        await roundTrip(
          createConnectTransport({ baseUrl, httpVersion: "2", ...withToken }),
          "Connect/TLS h2",
          "connect-tls",
        );
        assert.ok(service.seenAuthorization.length > 0);
        assert.ok(service.seenAuthorization.every((a) => a === "Bearer s3cret"));

        const wrongKey = createClient(
          HeadscaleService,
          createGrpcTransport({ baseUrl, nodeOptions: { ca }, interceptors: [bearer("x")] }),
        );
        const code = await wrongKey.listUsers({}).then(
          () => undefined,
          (error: unknown) => ConnectError.from(error).code,
        );
        assert.equal(code, Code.Unauthenticated);

        // Connect's JSON protocol as a browser or UI would send it, over HTTP/1.1 and over h2.
        // (connect-node's own HTTP/1.1 client over TLS is unreliable on Deno 2.9 — it writes the
        // body on TCP connect, before the TLS handshake ends — so Deno's fetch plays the browser.)
        for (const http2Only of [false, true]) {
          const client = Deno.createHttpClient({
            caCerts: [ca],
            http1: !http2Only,
            http2: http2Only,
          });
          try {
            for (let i = 0; i < 2; i++) {
              const response = await fetch(`${baseUrl}/headscale.v1.HeadscaleService/ListUsers`, {
                method: "POST",
                client,
                headers: { "content-type": "application/json", authorization: "Bearer s3cret" },
                body: JSON.stringify({ name: "alice" }),
              });
              assert.equal(response.status, 200);
              assert.deepEqual((await response.json()).users.map((u: User) => u.name), ["alice"]);
              if (!http2Only) assert.equal(response.headers.get("connection"), "close");
            }
            const denied = await fetch(`${baseUrl}/headscale.v1.HeadscaleService/ListUsers`, {
              method: "POST",
              client,
              headers: { "content-type": "application/json" },
              body: "{}",
            });
            assert.equal(denied.status, 401);
            assert.equal((await denied.json()).code, "unauthenticated");
          } finally {
            client.close();
          }
        }

        for (const offered of [["h2"], ["http/1.1"], ["h2", "http/1.1"]]) {
          const chosen = await new Promise<string | false>((resolve, reject) => {
            const socket = tls.connect({
              host: "127.0.0.1",
              port: listener.port,
              servername: "localhost",
              ca,
              ALPNProtocols: offered,
            }, () => {
              resolve(socket.alpnProtocol ?? false);
              socket.destroy();
            });
            socket.on("error", reject);
          });
          assert.equal(chosen, offered[0], `ALPN offered ${offered}`);
        }
      } finally {
        await listener.close();
      }
    });
  },
});

Deno.test({
  name: "cleartext TCP: h2c and HTTP/1.1 on one port; h2c-only refuses HTTP/1.1",
  ...leaky,
  async fn() {
    const service = fakeUserService();
    const handler = connectNodeAdapter({ routes: service.routes });
    const both = await serveCleartextTcp(handler, { hostname: "127.0.0.1", port: 0 });
    const errors: Error[] = [];
    const h2Only = await serveCleartextTcp(handler, {
      hostname: "127.0.0.1",
      port: 0,
      http1: false,
      onConnectionError: (error) => errors.push(error),
    });
    try {
      const baseUrl = `http://127.0.0.1:${both.port}`;
      await roundTrip(createGrpcTransport({ baseUrl }), "gRPC/h2c TCP", "tcp-grpc");
      await roundTrip(
        createConnectTransport({ baseUrl, httpVersion: "1.1" }),
        "Connect/HTTP1.1 TCP",
        "tcp-connect",
      );
      const h2OnlyUrl = `http://127.0.0.1:${h2Only.port}`;
      await roundTrip(createGrpcTransport({ baseUrl: h2OnlyUrl }), "gRPC/h2c-only", "h2only");
      const refused = await createClient(
        HeadscaleService,
        createConnectTransport({ baseUrl: h2OnlyUrl, httpVersion: "1.1" }),
      ).listUsers({}).then(() => undefined, (error: unknown) => ConnectError.from(error).code);
      assert.ok(
        refused === Code.Unavailable || refused === Code.Aborted,
        `HTTP/1.1 connection dropped (got code ${refused})`,
      );
      assert.ok(errors.some((e) => /HTTP\/1\.1 request on an h2c-only listener/.test(e.message)));
    } finally {
      await both.close();
      await h2Only.close();
    }
  },
});

Deno.test({
  name: "a handler that throws answers 500 and the listener keeps serving",
  ...leaky,
  async fn() {
    await withTempDir(async (dir) => {
      const path = join(dir, "throw.sock");
      const errors: Error[] = [];
      let calls = 0;
      const handler: ApiRequestHandler = (_req, res) => {
        calls++;
        if (calls === 1) throw new Error("boom");
        res.writeHead(204);
        res.end();
      };
      const listener = await serveUnixSocket(handler, {
        path,
        onConnectionError: (error) => errors.push(error),
      });
      try {
        const status = () =>
          new Promise<number | undefined>((resolve, reject) => {
            const req = http.request({ socketPath: path, path: "/", method: "GET" }, (res) => {
              res.resume();
              res.on("end", () => resolve(res.statusCode));
            });
            req.on("error", reject);
            req.end();
          });
        assert.equal(await status(), 500);
        assert.equal(await status(), 204);
        assert.ok(errors.some((e) => e.message === "boom"));
      } finally {
        await listener.close();
      }
    });
  },
});

Deno.test({
  name: "serveUnixSocket replaces a stale socket file but never another kind of file",
  ...leaky,
  async fn() {
    await withTempDir(async (dir) => {
      const handler: ApiRequestHandler = (_req, res) => res.end("ok");
      const path = join(dir, "stale.sock");
      // A process that died without closing its listener leaves the socket file behind.
      const crashed = await new Deno.Command(Deno.execPath(), {
        args: [
          "eval",
          `Deno.listen({ transport: "unix", path: ${JSON.stringify(path)} }); Deno.exit(0)`,
        ],
      }).output();
      assert.ok(crashed.success);
      assert.ok((await Deno.lstat(path)).isSocket, "stale socket file left behind");
      const second = await serveUnixSocket(handler, { path, mode: 0o700 });
      try {
        assert.equal((await Deno.lstat(path)).mode! & 0o777, 0o700);
        const body = await new Promise<string>((resolve, reject) => {
          http.get({ socketPath: path, path: "/" }, (res) => {
            let text = "";
            res.on("data", (chunk) => (text += chunk));
            res.on("end", () => resolve(text));
          }).on("error", reject);
        });
        assert.equal(body, "ok");
      } finally {
        await second.close();
      }

      const regular = join(dir, "regular-file");
      await Deno.writeTextFile(regular, "keep me");
      await assert.rejects(serveUnixSocket(handler, { path: regular }), /not a unix socket/);
      assert.equal(await Deno.readTextFile(regular), "keep me");
    });
  },
});

// The real proof: headscale's own Go CLI (v0.29.x) against these listeners. Build it outside the
// repo (see docs/api.md) and point HEADSCALE_GO_CLI at the binary; skipped otherwise.
const goCli = Deno.env.get("HEADSCALE_GO_CLI");
Deno.test({
  name: "headscale's Go CLI lists and creates users over the unix socket and over TLS" +
    (goCli ? "" : " (set HEADSCALE_GO_CLI to run)"),
  ignore: !goCli,
  ...leaky,
  async fn() {
    await withTempDir(async (dir) => {
      const { ca, cert, key } = await testCertificates(dir);
      const service = fakeUserService();
      const socketPath = join(dir, "headscale.sock");
      const unix = await serveUnixSocket(connectNodeAdapter({ routes: service.routes }), {
        path: socketPath,
      });
      const remote = await serveTls(
        connectNodeAdapter({ routes: service.routes, interceptors: [requireBearer("s3cret")] }),
        { hostname: "127.0.0.1", port: 0, cert, key },
      );
      const configPath = join(dir, "config.yaml");
      await Deno.writeTextFile(
        configPath,
        `unix_socket: ${socketPath}\ndisable_check_updates: true\ncli:\n  timeout: 10s\n`,
      );
      await Deno.writeTextFile(join(dir, "ca.pem"), ca);
      const run = async (args: string[], env: Record<string, string> = {}) => {
        const output = await new Deno.Command(goCli!, {
          args: ["-c", configPath, ...args],
          env: { HOME: dir, ...env },
          stdout: "piped",
          stderr: "piped",
        }).output();
        const decode = (bytes: Uint8Array) => new TextDecoder().decode(bytes);
        return { code: output.code, stdout: decode(output.stdout), stderr: decode(output.stderr) };
      };
      try {
        const created = await run(["users", "create", "bob", "-o", "json"]);
        assert.equal(created.code, 0, created.stderr);
        assert.equal(JSON.parse(created.stdout).name, "bob");
        const listed = await run(["users", "list", "-o", "json"]);
        assert.equal(listed.code, 0, listed.stderr);
        assert.deepEqual(JSON.parse(listed.stdout).map((u: { name: string }) => u.name), [
          "alice",
          "bob",
        ]);
        const table = await run(["users", "list"]);
        assert.equal(table.code, 0, table.stderr);
        assert.match(table.stdout, /alice/);

        const remoteEnv = {
          HEADSCALE_CLI_ADDRESS: `localhost:${remote.port}`,
          HEADSCALE_CLI_API_KEY: "s3cret",
          SSL_CERT_FILE: join(dir, "ca.pem"),
        };
        const verified = await run(["users", "list", "-o", "json"], remoteEnv);
        assert.equal(verified.code, 0, verified.stderr);
        assert.equal(JSON.parse(verified.stdout).length, 2);
        const insecure = await run(["users", "list", "-o", "json"], {
          HEADSCALE_CLI_ADDRESS: `127.0.0.1:${remote.port}`,
          HEADSCALE_CLI_API_KEY: "s3cret",
          HEADSCALE_CLI_INSECURE: "true",
        });
        assert.equal(insecure.code, 0, insecure.stderr);
        const badKey = await run(["users", "list", "-o", "json"], {
          ...remoteEnv,
          HEADSCALE_CLI_API_KEY: "wrong",
        });
        assert.notEqual(badKey.code, 0);
        assert.match(badKey.stdout + badKey.stderr, /Unauthenticated/);
        assert.ok(service.seenAuthorization.includes("Bearer s3cret"));
      } finally {
        await unix.close();
        await remote.close();
      }
    });
  },
});
