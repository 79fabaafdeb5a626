// Regression: the waypoint reused kept-alive upstream connections to a backend that had gone away, and
// requests on them hung or failed. A backend restarted on the same address must get the next request.
import type http from 'node:http';
import t from 'tap';
import { agentVia, request, startNamedHttp } from '../helpers/http-via.js';
import { podIp, socksConnect, startMesh } from '../helpers/loopback.js';
import { startLoopbackWaypoint, waypointManifests } from '../helpers/waypoint.js';

const plan = { net: 223 };
const WAYPOINT_IP = podIp(plan, 2, 50);

const backend = (ns: string, name: string, ip: string, vip: string): string => `---
apiVersion: v1
kind: Pod
metadata: { name: ${name}, namespace: ${ns}, labels: { app: ${name} } }
spec: { nodeName: node-2, serviceAccountName: ${name}, containers: [{ name: main, ports: [{ name: http, containerPort: 9080 }] }] }
status: { podIP: ${ip} }
---
apiVersion: v1
kind: Service
metadata: { name: ${name}, namespace: ${ns}, labels: { istio.io/use-waypoint: waypoint, istio.io/use-waypoint-namespace: app } }
spec: { clusterIP: ${vip}, selector: { app: ${name} }, ports: [{ name: http, port: 9080, targetPort: http }] }
`;

const extra = `${waypointManifests(WAYPOINT_IP)}${backend('app', 'reviews', podIp(plan, 2, 11), '10.96.223.20')}`;

t.test('regression: the waypoint does not reuse connections to a backend that went away', async (t) => {
  const logs: Record<string, unknown>[] = [];
  const mesh = await startMesh(plan, { extra });
  t.teardown(() => mesh.close());
  const waypoint = await startLoopbackWaypoint(mesh, WAYPOINT_IP, logs);
  t.teardown(() => waypoint.close(200));
  const agent = agentVia(() => socksConnect(mesh.node1, podIp(plan, 1, 1), '10.96.223.20', 9080));
  t.teardown(() => agent.destroy());
  const host = 'reviews.app.svc.cluster.local:9080';
  const ip = podIp(plan, 2, 11);

  let server: http.Server = await startNamedHttp(ip, 9080, 'first');
  t.equal(JSON.parse((await request(agent, { host })).body).name, 'first', 'served by the first backend');

  // The backend goes away: its kept-alive connection to the waypoint is closed from its side.
  server.closeAllConnections();
  await new Promise<void>((r) => server.close(() => r()));
  server = await startNamedHttp(ip, 9080, 'restarted');
  t.teardown(() => server.close());

  const again = await Promise.race([
    request(agent, { host }),
    new Promise<never>((_, reject) => setTimeout(() => reject(new Error('the request hung on a dead upstream')), 5000).unref()),
  ]);
  t.equal(again.status, 200, 'the next request is answered');
  t.equal(JSON.parse(again.body).name, 'restarted', 'by the backend that is there now');
  t.notOk(
    logs.some((l) => typeof l['status'] === 'number' && (l['status'] as number) >= 500),
    'no request failed on the way',
  );
});
