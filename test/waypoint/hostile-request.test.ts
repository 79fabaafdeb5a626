// Regression: a request-target that Node's HTTP parser lets through but the WHATWG URL parser refuses
// (`GET http://[ HTTP/1.1`, a port over 65535, an unparsable host) threw out of the waypoint's
// request handler and took the whole process down. Now it is a 400 for that request, logged and counted.
import type http from 'node:http';
import t from 'tap';
import { agentVia, request, startNamedHttp } from '../helpers/http-via.js';
import { exchange, podIp, socksConnect, startMesh } from '../helpers/loopback.js';
import { startLoopbackWaypoint, waypointManifests } from '../helpers/waypoint.js';

const plan = { net: 233 };
const WAYPOINT_IP = podIp(plan, 2, 50);
const VIP = '10.96.233.20';

const extra = `${waypointManifests(WAYPOINT_IP)}---
apiVersion: v1
kind: Pod
metadata: { name: reviews, namespace: app, labels: { app: reviews } }
spec: { nodeName: node-2, serviceAccountName: reviews, containers: [{ name: main, ports: [{ name: http, containerPort: 9080 }] }] }
status: { podIP: ${podIp(plan, 2, 11)} }
---
apiVersion: v1
kind: Service
metadata: { name: reviews, namespace: app, labels: { istio.io/use-waypoint: waypoint } }
spec: { clusterIP: ${VIP}, selector: { app: reviews }, ports: [{ name: http, port: 9080, targetPort: http }] }
`;

t.test('regression: request-targets the URL parser refuses get a 400 and cost only their request', async (t) => {
  const logs: Record<string, unknown>[] = [];
  const mesh = await startMesh(plan, { extra });
  t.teardown(() => mesh.close());
  const server: http.Server = await startNamedHttp(podIp(plan, 2, 11), 9080, 'reviews');
  t.teardown(() => server.close());
  const waypoint = await startLoopbackWaypoint(mesh, WAYPOINT_IP, logs);
  t.teardown(() => waypoint.close(200));
  const client = podIp(plan, 1, 1);
  const host = 'reviews.app.svc.cluster.local:9080';

  for (const target of ['http://[', 'http://reviews:99999/', 'no-slash', 'http://%zz/']) {
    const answer = await exchange(await socksConnect(mesh.node1, client, VIP, 9080), Buffer.from(`GET ${target} HTTP/1.1\r\nhost: ${host}\r\n\r\n`));
    t.match(String(answer), /^HTTP\/1\.1 400 /, `GET ${target}: 400`);
  }
  const failed = logs.filter((l) => l['msg'] === 'request failed' && l['response_code'] === 400).map((l) => l['path']);
  // "no-slash" is refused by Node's HTTP parser before any handler; the other three reached the waypoint's.
  t.same(failed, ['http://[', 'http://reviews:99999/', 'http://%zz/'], 'each refused target is logged as a failed request with its reason');

  const agent = agentVia(() => socksConnect(mesh.node1, client, VIP, 9080));
  t.teardown(() => agent.destroy());
  t.equal((await request(agent, { host, path: '/after' })).status, 200, 'the waypoint still serves');
});
