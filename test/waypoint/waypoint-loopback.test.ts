// The waypoint between two real daemons on loopback: HBONE in with the VIP as :authority, HTTPRoute
// weighted split and path match, L7 DENY, HBONE out with the waypoint's identity, and a destination that
// only admits the waypoint.
import { appendFileSync } from 'node:fs';
import type http from 'node:http';
import http2 from 'node:http2';
import t from 'tap';
import { agentVia, request, startNamedHttp } from '../helpers/http-via.js';
import { exchange, podIp, roundTrip, socksConnect, startEcho, startMesh } from '../helpers/loopback.js';
import { startLoopbackWaypoint, waypointManifests } from '../helpers/waypoint.js';

const plan = { net: 217 };
const WAYPOINT_IP = podIp(plan, 2, 50);
const REVIEWS_VIP = '10.96.217.20';

const extra = `${waypointManifests(WAYPOINT_IP)}---
apiVersion: v1
kind: Pod
metadata: { name: reviews-v1, namespace: app, labels: { app: reviews, version: v1 } }
spec: { nodeName: node-2, serviceAccountName: reviews, containers: [{ name: main, ports: [{ name: http, containerPort: 9080 }] }] }
status: { podIP: ${podIp(plan, 2, 11)} }
---
apiVersion: v1
kind: Pod
metadata: { name: reviews-v2, namespace: app, labels: { app: reviews, version: v2 } }
spec: { nodeName: node-1, serviceAccountName: reviews, containers: [{ name: main, ports: [{ name: http, containerPort: 9080 }] }] }
status: { podIP: ${podIp(plan, 1, 12)} }
---
apiVersion: v1
kind: Service
metadata: { name: reviews, namespace: app, labels: { istio.io/use-waypoint: waypoint } }
spec: { clusterIP: ${REVIEWS_VIP}, selector: { app: reviews }, ports: [{ name: http, port: 9080, targetPort: http }] }
---
apiVersion: v1
kind: Service
metadata: { name: reviews-v1, namespace: app }
spec: { clusterIP: 10.96.217.21, selector: { app: reviews, version: v1 }, ports: [{ name: http, port: 9080, targetPort: http }] }
---
apiVersion: v1
kind: Service
metadata: { name: reviews-v2, namespace: app }
spec: { clusterIP: 10.96.217.22, selector: { app: reviews, version: v2 }, ports: [{ name: http, port: 9080, targetPort: http }] }
---
apiVersion: v1
kind: Service
metadata: { name: raw, namespace: app, labels: { istio.io/use-waypoint: waypoint } }
spec:
  clusterIP: 10.96.217.30
  selector: { app: echo }
  ports: [{ name: tcp-raw, port: 7000, targetPort: 8080 }, { name: undeclared, port: 7001, targetPort: 8080 }]
---
apiVersion: v1
kind: Service
metadata: { name: greeter, namespace: app, labels: { istio.io/use-waypoint: waypoint } }
spec:
  clusterIP: 10.96.217.40
  selector: { app: reviews, version: v1 }
  ports: [{ name: grpc, port: 9090, targetPort: 9090 }]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: reviews, namespace: app }
spec:
  parentRefs: [{ group: "", kind: Service, name: reviews, port: 9080 }]
  rules:
    - matches: [{ path: { type: PathPrefix, value: /beta } }]
      backendRefs: [{ name: reviews-v2, port: 9080 }]
    - backendRefs:
        - { name: reviews-v1, port: 9080, weight: 90 }
        - { name: reviews-v2, port: 9080, weight: 10 }
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: no-admin-writes, namespace: app }
spec:
  targetRefs: [{ group: "", kind: Service, name: reviews }]
  action: DENY
  rules: [{ to: [{ operation: { methods: [POST], paths: [/admin*] } }] }]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: reviews-only-via-waypoint, namespace: app }
spec:
  selector: { matchLabels: { app: reviews } }
  action: ALLOW
  rules: [{ from: [{ source: { principals: [cluster.local/ns/app/sa/waypoint] } }] }]
`;

/** A deterministic xorshift PRNG, so the split below is exact for this seed. */
function seeded(seed: number): () => number {
  let x = seed;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) / 2 ** 32;
  };
}

t.test('a service with a waypoint: canary split, path route, L7 deny, waypoint-only destination', async (t) => {
  const logs: Record<string, unknown>[] = [];
  const meshLogs: Record<string, unknown>[] = [];
  const mesh = await startMesh(plan, { extra, logSink: (l) => meshLogs.push(l) });
  t.teardown(() => mesh.close());
  const servers: http.Server[] = [await startNamedHttp(podIp(plan, 2, 11), 9080, 'v1'), await startNamedHttp(podIp(plan, 1, 12), 9080, 'v2')];
  t.teardown(() => servers.forEach((s) => s.close()));
  const waypoint = await startLoopbackWaypoint(mesh, WAYPOINT_IP, logs, { random: seeded(42) });
  t.teardown(() => waypoint.close(200));
  t.same(waypoint.pending(), [], 'the waypoint is ready');
  t.equal(waypoint.identity, 'spiffe://cluster.local/ns/app/sa/waypoint');

  const client = podIp(plan, 1, 1);
  const agent = agentVia(() => socksConnect(mesh.node1, client, REVIEWS_VIP, 9080));
  t.teardown(() => agent.destroy());
  const host = `reviews.app.svc.cluster.local:9080`;

  const counts: Record<string, number> = {};
  for (let i = 0; i < 1000; i++) {
    const r = await request(agent, { host, path: `/reviews/${i}` });
    const name = (JSON.parse(r.body) as { name: string }).name;
    counts[name] = (counts[name] ?? 0) + 1;
  }
  t.ok((counts['v1'] ?? 0) >= 870 && (counts['v1'] ?? 0) <= 930, `90/10 split within ±3 points: ${JSON.stringify(counts)}`);

  const first = JSON.parse((await request(agent, { host, path: '/reviews/x' })).body) as { peer: string; xff: string };
  t.equal(first.peer, WAYPOINT_IP, 'the pod sees the waypoint as its peer');
  t.match(first.xff, client, 'and the client in X-Forwarded-For');

  for (let i = 0; i < 20; i++) {
    const r = JSON.parse((await request(agent, { host, path: '/beta/feature' })).body) as { name: string };
    t.equal(r.name, 'v2', 'the /beta prefix always goes to v2');
    if (r.name !== 'v2') break;
  }

  const denied = await request(agent, { host, method: 'POST', path: '/admin/users', body: 'x' });
  t.equal(denied.status, 403, 'POST /admin is denied at L7');
  t.equal(denied.body, 'RBAC: access denied\n');
  t.equal((await request(agent, { host, method: 'GET', path: '/admin/users' })).status, 200, 'GET /admin is allowed');
  const post = await request(agent, { host, method: 'POST', path: '/orders', body: 'x' });
  t.equal(post.status, 200, `POST elsewhere is allowed: ${post.status} ${post.body} ${JSON.stringify(logs.filter((l) => l['msg'] === 'request failed').slice(-2))}`);

  // Straight to a reviews pod, around the waypoint: the pod admits only the waypoint's identity.
  await t.rejects(socksConnect(mesh.node1, client, podIp(plan, 2, 11), 9080), /NotAllowed/, 'a client going around the waypoint is refused by the destination');
  t.match(
    meshLogs.filter((l) => l['node'] === 'node-2' && l['msg'] === 'connection denied by policy').at(-1),
    { srcIdentity: 'spiffe://cluster.local/ns/app/sa/client', reason: 'no ALLOW policy matched' },
    'its only ALLOW policy (waypoint only) does not match the client identity',
  );

  // A malformed request gets a 400 and costs only its own connection.
  const garbage = await exchange(await socksConnect(mesh.node1, client, REVIEWS_VIP, 9080), Buffer.from('GET / HTTP/1.1\r\nno colon here\r\n\r\n'));
  t.match(String(garbage), /^HTTP\/1\.1 400 /, 'malformed HTTP: 400');
  t.equal((await request(agent, { host, path: '/after-garbage' })).status, 200, 'the waypoint still serves');

  // An Upgrade (as WebSocket uses) is routed and authorized like any request, then carries raw bytes.
  const upgraded = await socksConnect(mesh.node1, client, REVIEWS_VIP, 9080);
  const switched = await roundTrip(upgraded, `GET /chat HTTP/1.1\r\nhost: ${host}\r\nconnection: upgrade\r\nupgrade: echo\r\n\r\n`);
  t.match(switched, /^HTTP\/1\.1 101 Switching Protocols\r\n/, 'upgrade through the waypoint: 101');
  t.equal(await roundTrip(upgraded, 'raw bytes after the upgrade'), 'raw bytes after the upgrade', 'then bytes both ways');
  upgraded.destroy();
  const refused = await exchange(await socksConnect(mesh.node1, client, REVIEWS_VIP, 9080), Buffer.from(`POST /admin HTTP/1.1\r\nhost: ${host}\r\nconnection: upgrade\r\nupgrade: echo\r\ncontent-length: 0\r\n\r\n`));
  t.match(String(refused), /^HTTP\/1\.1 403 Forbidden\r\n[\s\S]*RBAC: access denied/, 'an upgrade the policy denies: 403');

  // HTTP/2 without TLS (prior knowledge) is detected and routed per request too.
  const socksStream = await socksConnect(mesh.node1, client, REVIEWS_VIP, 9080);
  const h2session = http2.connect(`http://${REVIEWS_VIP}:9080`, { createConnection: () => socksStream });
  t.teardown(() => h2session.destroy());
  const h2get = (method: string, path: string): Promise<{ status: number; body: string }> =>
    new Promise((resolve, reject) => {
      const s = h2session.request({ ':method': method, ':path': path, ':authority': host });
      let body = '';
      let status = 0;
      s.on('response', (h) => (status = Number(h[':status'])));
      s.on('data', (c: Buffer) => (body += String(c)));
      s.on('end', () => resolve({ status, body }));
      s.on('error', reject);
      s.end(method === 'POST' ? 'x' : undefined);
    });
  const viaH2 = await h2get('GET', '/beta/h2');
  t.equal(viaH2.status, 200, 'h2c request answered');
  t.match(JSON.parse(viaH2.body), { name: 'v2', path: '/beta/h2' }, 'and routed by path to v2');
  t.equal((await h2get('POST', '/admin')).status, 403, 'h2c POST /admin denied');

  // gRPC (HTTP/2 to a port declared grpc): sent on as HTTP/2, so the trailers carrying its status arrive.
  const grpc = http2.createServer();
  grpc.on('stream', (stream, headers) => {
    stream.on('data', () => undefined);
    stream.on('end', () => {
      stream.respond({ ':status': 200, 'content-type': 'application/grpc', 'x-te': String(headers['te']), 'x-xff': String(headers['x-forwarded-for']) }, { waitForTrailers: true });
      stream.on('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0', 'grpc-message': 'ok' }));
      stream.end('hello');
    });
  });
  await new Promise<void>((r) => grpc.listen(9090, podIp(plan, 2, 11), r));
  t.teardown(() => grpc.close());
  const grpcSocket = await socksConnect(mesh.node1, client, '10.96.217.40', 9090);
  const grpcSession = http2.connect('http://10.96.217.40:9090', { createConnection: () => grpcSocket });
  t.teardown(() => grpcSession.destroy());
  const call = await new Promise<{ headers: http2.IncomingHttpHeaders; body: string; trailers: http2.IncomingHttpHeaders }>((resolve, reject) => {
    const s = grpcSession.request({ ':method': 'POST', ':path': '/greeter.Greeter/SayHello', 'content-type': 'application/grpc', te: 'trailers' });
    let headers: http2.IncomingHttpHeaders = {};
    let body = '';
    s.on('response', (h) => (headers = h));
    s.on('data', (c: Buffer) => (body += String(c)));
    s.on('trailers', (trailers) => resolve({ headers, body, trailers }));
    s.on('error', reject);
    s.end('request');
  });
  t.match(call.headers, { ':status': 200, 'content-type': 'application/grpc', 'x-te': 'trailers', 'x-xff': client }, 'gRPC through the waypoint: te: trailers and the client in X-Forwarded-For');
  t.equal(call.body, 'hello');
  t.match(call.trailers, { 'grpc-status': '0', 'grpc-message': 'ok' }, 'and its status in the trailers');

  // TCP through the waypoint: a port declared tcp, and an undeclared one whose first bytes are not HTTP.
  const echo = await startEcho(podIp(plan, 2, 1));
  const echoB = await startEcho(podIp(plan, 2, 2));
  t.teardown(() => Promise.all([echo.close(), echoB.close()]));
  for (const port of [7000, 7001]) {
    const payload = Buffer.from(`\x00\x01binary-${port}`.repeat(1000));
    const back = await exchange(await socksConnect(mesh.node1, client, '10.96.217.30', port), payload);
    t.ok(back.equals(payload), `port ${port}: bytes echoed through the waypoint unchanged`);
  }
  t.ok([...echo.peers, ...echoB.peers].every((p) => p === WAYPOINT_IP) && echo.peers.length + echoB.peers.length === 2, 'both arrived from the waypoint');

  // A policy added while a TCP connection is open through the waypoint closes it, as ztunnel does.
  const held = await socksConnect(mesh.node1, client, '10.96.217.30', 7000);
  t.equal(await roundTrip(held, 'still there?'), 'still there?', 'a long-lived TCP connection through the waypoint');
  const closed = new Promise<void>((resolve) => {
    held.once('end', () => resolve());
    held.once('close', () => resolve());
  });
  held.on('error', () => undefined);
  appendFileSync(
    mesh.manifestFile,
    `---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: raw-off, namespace: app }
spec:
  targetRefs: [{ group: "", kind: Service, name: raw }]
  action: DENY
  rules: [{ to: [{ operation: { ports: ["7000"] } }] }]
`,
  );
  await closed;
  t.pass('the new DENY closed it');
  const refusedTcp = await exchange(await socksConnect(mesh.node1, client, '10.96.217.30', 7000), Buffer.from('x')).then(
    (b) => (b.length === 0 ? 'nothing' : `${b.length} bytes`),
    (e: NodeJS.ErrnoException) => e.code ?? e.message,
  );
  t.match(refusedTcp, /^(nothing|ECONNRESET)$/, `and new ones carry nothing (${refusedTcp})`);
  t.match(logs.filter((l) => l['msg'] === 'connection denied by policy').at(-1), { policy: 'app/raw-off' }, 'refused by the new policy');

  const metrics = await (await fetch(`http://127.0.0.1:${waypoint.addresses.metrics?.port ?? 0}/metrics`)).text();
  t.match(metrics, /istio_requests_total\{reporter="waypoint",source_workload="client",[^}]*destination_service="reviews-v1\.app\.svc\.cluster\.local"[^}]*response_code="200"\} \d+/, 'requests counted by the waypoint, with the backend service');
  t.match(metrics, /istio_requests_total\{reporter="waypoint"[^}]*response_code="403"\} 3\n/, "the three denied requests (HTTP/1.1, upgrade, h2c) are counted with 403");
  t.match(metrics, /istio_tcp_connections_opened_total\{reporter="waypoint"/, 'connections counted with reporter waypoint');
  const dump = (await (await fetch(`http://127.0.0.1:${waypoint.addresses.admin?.port ?? 0}/config_dump`)).json()) as {
    services: { uid: string; routes: string[] }[];
    policies: { name: string }[];
  };
  t.same(dump.services.map((s) => [s.uid, s.routes]).sort(), [['app/greeter', []], ['app/raw', []], ['app/reviews', ['app/reviews']]], 'config_dump: the services it serves and their routes');
  t.same(dump.policies.map((p) => p.name), ['no-admin-writes', 'raw-off'], 'config_dump: its policies (the selector policy is ztunnel\'s)');
  const deniedLog = logs.find((l) => l['msg'] === 'request failed' && l['response_code'] === 403);
  t.match(deniedLog, { reporter: 'waypoint', method: 'POST', path: '/admin/users', 'src.identity': 'spiffe://cluster.local/ns/app/sa/client' }, 'the denial is in the access log with the client identity');
});
