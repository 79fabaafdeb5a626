// Cluster mode against a test API server speaking the real list/watch protocol to the real client
// library: each change in the cluster changes what the running daemons do.
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import t from 'tap';
import { parse } from 'yaml';
import { App } from '../../src/app.js';
import { configFromFlags } from '../../src/config/config.js';
import { FakeApiServer, GATEWAY_API_PATHS } from '../helpers/fake-apiserver.js';
import { writeFileSync } from 'node:fs';
import { CaServer } from '../../src/identity/ca-server.js';
import { CertificateAuthority } from '../../src/identity/ca.js';
import { kubeTokenReviewApi } from '../../src/identity/kube-token-review.js';
import { tokenReviewAuthenticator } from '../../src/identity/node-authenticator.js';
import { RemoteCaSource } from '../../src/identity/source.js';
import { State } from '../../src/model/state.js';
import { KubeSource, kubeApi } from '../../src/sources/kube.js';
import { waypointConfigFromFlags } from '../../src/config/waypoint-config.js';
import { WaypointApp } from '../../src/waypoint/waypoint-app.js';
import { exchange, meshManifests, podIp, socksConnect, startEcho } from '../helpers/loopback.js';

const plan = { net: 215 };
const PATHS: Record<string, string> = {
  Namespace: '/api/v1/namespaces',
  Pod: '/api/v1/pods',
  Service: '/api/v1/services',
  Node: '/api/v1/nodes',
  AuthorizationPolicy: '/apis/security.istio.io/v1/authorizationpolicies',
  Gateway: '/apis/gateway.networking.k8s.io/v1/gateways',
  HTTPRoute: '/apis/gateway.networking.k8s.io/v1/httproutes',
};
type Obj = { kind: string; metadata: { name: string; namespace?: string; labels?: Record<string, string> } } & Record<string, unknown>;

async function until(what: string, pred: () => boolean, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

t.test('daemons in cluster mode follow the API server', async (t) => {
  const api = new FakeApiServer();
  await api.start();
  t.teardown(() => api.close());
  const objects = (meshManifests(plan).split(/^---$/m).map((d) => parse(d) as Obj | null).filter((o): o is Obj => o !== null));
  for (const o of objects) api.upsert(PATHS[o.kind] ?? '', o);
  const dir = mkdtempSync(join(tmpdir(), 'ztunnel-ts-kube-'));
  api.writeKubeconfig(join(dir, 'kubeconfig'));
  const logs: Record<string, unknown>[] = [];
  const start = (node: string): Promise<App> =>
    App.start(
      configFromFlags({
        node, kube: true, kubeconfig: join(dir, 'kubeconfig'), caDir: join(dir, 'ca'),
        socks5: '127.0.0.1:0', admin: '127.0.0.1:0', metrics: '127.0.0.1:0', readiness: '127.0.0.1:0', drainSeconds: 1,
      }),
      pino({ level: 'info' }, { write: (l: string) => logs.push(JSON.parse(l) as Record<string, unknown>) }).child({ node }),
    );
  const node1 = await start('node-1');
  const node2 = await start('node-2');
  t.teardown(() => Promise.all([node1.drain(100), node2.drain(100)]));
  await until('first sync', () => node1.state.workloadByIp(podIp(plan, 1, 1)) !== undefined && node2.state.workloadByIp(podIp(plan, 2, 1)) !== undefined);
  const echo = await startEcho(podIp(plan, 2, 1));
  const newPod = await startEcho(podIp(plan, 2, 5));
  t.teardown(() => Promise.all([echo.close(), newPod.close()]));
  const client = podIp(plan, 1, 1);
  /** 'ok' when bytes went there and back; otherwise the SOCKS refusal and node-1's flag for it. */
  const attempt = async (ip: string): Promise<string> => {
    try {
      const s = await socksConnect(node1, client, ip, 8080);
      const back = String(await exchange(s, Buffer.from('hi')));
      return back === 'hi' ? 'ok' : `got ${JSON.stringify(back)}`;
    } catch (err) {
      const line = logs.filter((l) => l['node'] === 'node-1' && l['msg'] === 'connection failed' && l['direction'] === 'outbound').at(-1);
      return `${(err as Error).message} [${String(line?.['response_flags'])}]`;
    }
  };
  const works = async (ip: string): Promise<boolean> => (await attempt(ip)) === 'ok';
  const namespace = objects.find((o) => o.kind === 'Namespace' && o.metadata.name === 'app') as Obj;
  const outboundTo = (ip: string): Record<string, unknown> | undefined =>
    logs.filter((l) => l['msg'] === 'connection complete' && l['direction'] === 'outbound' && String(l['dst.addr']).startsWith(`${ip}:`)).at(-1);

  t.ok(await works(podIp(plan, 2, 1)), 'synced state carries traffic over HBONE');
  t.match(outboundTo(podIp(plan, 2, 1)), { 'dst.hbone_addr': `${podIp(plan, 2, 1)}:15008` });

  t.test('namespace label flip turns capture off and on', async (t) => {
    api.upsert(PATHS['Namespace'] ?? '', { ...namespace, metadata: { name: 'app', labels: {} } });
    await until('capture off', () => node1.state.workloadByIp(client)?.captured === false, 1000);
    t.match(await attempt(podIp(plan, 2, 1)), /NotAllowed \[UNKNOWN_SOURCE\]/, 'the client is no longer a captured workload');
    api.upsert(PATHS['Namespace'] ?? '', namespace);
    await until('capture on', () => node1.state.workloadByIp(client)?.captured === true, 1000);
    t.ok(await works(podIp(plan, 2, 1)));
  });

  t.test('pod add and delete', async (t) => {
    const pod: Obj = {
      kind: 'Pod',
      apiVersion: 'v1',
      metadata: { name: 'echo-c', namespace: 'app', labels: { app: 'echo' } },
      spec: { nodeName: 'node-2', serviceAccountName: 'echo' },
      status: { podIP: podIp(plan, 2, 5) },
    };
    api.upsert(PATHS['Pod'] ?? '', pod);
    await until('pod added', () => node2.state.workloadByIp(podIp(plan, 2, 5)) !== undefined && node1.state.workloadByIp(podIp(plan, 2, 5)) !== undefined);
    await new Promise((r) => setTimeout(r, 100)); // node-2 binds the new pod's HBONE address
    t.ok(await works(podIp(plan, 2, 5)));
    t.match(outboundTo(podIp(plan, 2, 5)), { 'dst.hbone_addr': `${podIp(plan, 2, 5)}:15008` }, 'new pod reached over HBONE');
    api.remove(PATHS['Pod'] ?? '', 'app', 'echo-c');
    await until('pod deleted', () => node1.state.workloadByIp(podIp(plan, 2, 5)) === undefined);
    t.ok(await works(podIp(plan, 2, 5)));
    t.equal(outboundTo(podIp(plan, 2, 5))?.['dst.hbone_addr'], undefined, 'an unknown address is passed through as plain TCP');
  });

  t.test('a service without a selector takes its endpoints from EndpointSlices', async (t) => {
    api.upsert(PATHS['Service'] ?? '', { kind: 'Service', apiVersion: 'v1', metadata: { name: 'external', namespace: 'app' }, spec: { clusterIP: '10.96.215.20', ports: [{ port: 80, targetPort: 8080 }] } });
    api.upsert('/apis/discovery.k8s.io/v1/endpointslices', {
      kind: 'EndpointSlice',
      apiVersion: 'discovery.k8s.io/v1',
      metadata: { name: 'external-1', namespace: 'app', labels: { 'kubernetes.io/service-name': 'external' } },
      addressType: 'IPv4',
      endpoints: [{ addresses: [podIp(plan, 2, 1)], conditions: { ready: true } }],
    });
    await until('slice applied', () => {
      const svc = node1.state.serviceByVip('10.96.215.20');
      return svc !== undefined && node1.state.endpointsOf(svc).length === 1;
    });
    const s = await socksConnect(node1, client, '10.96.215.20', 80);
    t.equal(String(await exchange(s, Buffer.from('via slice'))), 'via slice');
    t.match(outboundTo(podIp(plan, 2, 1)), { 'dst.service': 'app/external', 'dst.hbone_addr': `${podIp(plan, 2, 1)}:15008` });
  });

  const deny: Obj = {
    kind: 'AuthorizationPolicy',
    apiVersion: 'security.istio.io/v1',
    metadata: { name: 'deny-client', namespace: 'app' },
    spec: { action: 'DENY', rules: [{ from: [{ source: { principals: ['cluster.local/ns/app/sa/client'] } }] }] },
  };

  t.test('policy add denies; after a dropped watch its removal is still seen', async (t) => {
    api.upsert(PATHS['AuthorizationPolicy'] ?? '', deny);
    await until('policy loaded', () => node2.state.policies.length === 1);
    t.match(await attempt(podIp(plan, 2, 1)), /NotAllowed \[DENIED\]/, 'denied by the destination');
    t.match(logs.filter((l) => l['node'] === 'node-2' && l['msg'] === 'connection denied by policy').at(-1), { policy: 'app/deny-client' }, 'by the new policy');
    const watchesBefore = api.requests.filter((r) => r.startsWith('watch')).length;
    api.dropWatches();
    await until('watches re-established', () => api.requests.filter((r) => r.startsWith('watch')).length >= watchesBefore + 5, 10_000);
    api.remove(PATHS['AuthorizationPolicy'] ?? '', 'app', 'deny-client');
    await until('policy removed', () => node2.state.policies.length === 0, 5000);
    t.ok(await works(podIp(plan, 2, 1)), 'allowed again');
  });

  t.test('410 Gone: the informers list again and catch up', async (t) => {
    const listsBefore = api.requests.filter((r) => r === 'list /api/v1/namespaces').length;
    api.expireHistory();
    api.dropWatches();
    api.upsert(PATHS['Namespace'] ?? '', { ...namespace, metadata: { name: 'app', labels: {} } });
    await until('relisted', () => api.requests.filter((r) => r === 'list /api/v1/namespaces').length > listsBefore, 10_000);
    await until('capture off after resync', () => node1.state.workloadByIp(client)?.captured === false, 5000);
    t.match(await attempt(podIp(plan, 2, 1)), /NotAllowed \[UNKNOWN_SOURCE\]/, 'the change made while the watch was gone is applied');
    api.upsert(PATHS['Namespace'] ?? '', namespace);
    await until('capture on again', () => node1.state.workloadByIp(client)?.captured === true, 5000);
    t.equal(await attempt(podIp(plan, 2, 1)), 'ok', 'and so is the next one, on the new watch');
  });
});

t.test('the CA in cluster mode: ServiceAccount tokens via TokenReview, identities of the token pod\'s node', async (t) => {
  const api = new FakeApiServer();
  await api.start();
  t.teardown(() => api.close());
  const objects = meshManifests({ net: 216 }).split(/^---$/m).map((d) => parse(d) as Obj | null).filter((o): o is Obj => o !== null);
  for (const o of objects) api.upsert(PATHS[o.kind] ?? '', o);
  // The node daemon itself: a host-network pod of the ztunnel service account on node-1.
  api.upsert(PATHS['Pod'] ?? '', { kind: 'Pod', metadata: { name: 'ztunnel-n1', namespace: 'istio-system' }, spec: { nodeName: 'node-1', hostNetwork: true, serviceAccountName: 'ztunnel' } });
  api.tokens.set('tok-n1', { username: 'system:serviceaccount:istio-system:ztunnel', namespace: 'istio-system', pod: 'ztunnel-n1', audiences: ['istio-ca'] });
  api.tokens.set('tok-app', { username: 'system:serviceaccount:app:client', namespace: 'app', pod: 'client', audiences: ['istio-ca'] });
  api.tokens.set('tok-wrong-aud', { username: 'system:serviceaccount:istio-system:ztunnel', namespace: 'istio-system', pod: 'ztunnel-n1', audiences: ['kubernetes'] });
  const dir = mkdtempSync(join(tmpdir(), 'ztunnel-ts-kube-ca-'));
  api.writeKubeconfig(join(dir, 'kubeconfig'));

  const state = new State();
  const source = new KubeSource({ state, trustDomain: 'cluster.local', logger: pino({ level: 'silent' }), kubeconfig: join(dir, 'kubeconfig') });
  await source.start();
  t.teardown(() => source.close());
  await until('sync', () => state.workloadByIp('127.216.1.1') !== undefined);
  const ca = await CertificateAuthority.create('cluster.local');
  const server = new CaServer({
    ca, state, trustDomain: 'cluster.local', logger: pino({ level: 'silent' }), host: '127.216.0.1', port: 0, maxTtlMs: 3600_000,
    authenticate: tokenReviewAuthenticator(kubeTokenReviewApi(kubeApi(join(dir, 'kubeconfig'))), ['istio-system/ztunnel']),
  });
  const addr = await server.start();
  t.teardown(() => server.close());
  const client = (token: string): RemoteCaSource => {
    writeFileSync(join(dir, token), token);
    return new RemoteCaSource({ url: `https://127.216.0.1:${addr.port}`, tokenFile: join(dir, token), rootPem: ca.rootPem, ttlMs: 600_000 });
  };
  t.equal((await client('tok-n1').fetch('spiffe://cluster.local/ns/app/sa/client')).identity, 'spiffe://cluster.local/ns/app/sa/client', 'a pod on the token pod\'s node');
  await t.rejects(client('tok-n1').fetch('spiffe://cluster.local/ns/legacy/sa/default'), { code: 'CA_FORBIDDEN' }, 'no such pod on node-1');
  t.equal((await client('tok-app').fetch('spiffe://cluster.local/ns/app/sa/client')).identity, 'spiffe://cluster.local/ns/app/sa/client', 'another service account: its own pod\'s identity');
  await t.rejects(client('tok-app').fetch('spiffe://cluster.local/ns/app/sa/echo'), { code: 'CA_FORBIDDEN' }, 'another service account: nothing else, even on its node');
  await t.rejects(client('tok-wrong-aud').fetch('spiffe://cluster.local/ns/app/sa/client'), { code: 'CA_UNAUTHENTICATED' }, 'token for another audience');
  await t.rejects(client('nonsense').fetch('spiffe://cluster.local/ns/app/sa/client'), { code: 'CA_UNAUTHENTICATED' }, 'unknown token');
});

t.test('Gateway API from the API server: waypoints and routes; without the CRDs the daemon still serves', async (t) => {
  const api = new FakeApiServer();
  await api.start('127.216.0.2');
  t.teardown(() => api.close());
  for (const p of GATEWAY_API_PATHS) api.unserved.add(p);
  const objects = meshManifests({ net: 216 }).split(/^---$/m).map((d) => parse(d) as Obj | null).filter((o): o is Obj => o !== null);
  for (const o of objects) api.upsert(PATHS[o.kind] ?? '', o);
  const dir = mkdtempSync(join(tmpdir(), 'ztunnel-ts-kube-gw-'));
  api.writeKubeconfig(join(dir, 'kubeconfig'));
  const logs: Record<string, unknown>[] = [];
  const without = new State();
  const first = new KubeSource({ state: without, trustDomain: 'cluster.local', logger: pino({ level: 'info' }, { write: (l: string) => logs.push(JSON.parse(l) as Record<string, unknown>) }), kubeconfig: join(dir, 'kubeconfig') });
  await first.start();
  t.teardown(() => first.close());
  await until('sync without the Gateway API', () => without.loaded);
  t.ok(without.workloadByIp('127.216.1.1') !== undefined, 'everything else is served');
  t.ok(logs.some((l) => l['kind'] === 'Gateway' && String(l['msg']).includes('Gateway API CRDs not installed')), 'the missing CRD is reported once, as information');

  for (const p of GATEWAY_API_PATHS) api.unserved.delete(p);
  api.upsert(PATHS['Gateway'] ?? '', { apiVersion: 'gateway.networking.k8s.io/v1', kind: 'Gateway', metadata: { name: 'waypoint', namespace: 'app' }, spec: { gatewayClassName: 'istio-waypoint' } });
  api.upsert(PATHS['Pod'] ?? '', { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'waypoint-0', namespace: 'app', labels: { 'gateway.networking.k8s.io/gateway-name': 'waypoint' } }, spec: { nodeName: 'node-2', serviceAccountName: 'waypoint' }, status: { podIP: '127.216.2.50' } });
  const echo = objects.find((o) => o.kind === 'Service') as Obj;
  api.upsert(PATHS['Service'] ?? '', { ...echo, metadata: { ...echo.metadata, labels: { 'istio.io/use-waypoint': 'waypoint' } } });
  api.upsert(PATHS['HTTPRoute'] ?? '', {
    apiVersion: 'gateway.networking.k8s.io/v1', kind: 'HTTPRoute', metadata: { name: 'echo', namespace: 'app' },
    spec: { parentRefs: [{ group: '', kind: 'Service', name: 'echo' }], rules: [{ backendRefs: [{ name: 'echo', port: 80 }] }] },
  });
  const state = new State();
  const second = new KubeSource({ state, trustDomain: 'cluster.local', logger: pino({ level: 'silent' }), kubeconfig: join(dir, 'kubeconfig') });
  await second.start();
  t.teardown(() => second.close());
  await until('gateway synced', () => state.waypoint('app/waypoint') !== undefined && state.httpRoutes.length === 1);
  t.equal(state.serviceByVip('10.96.216.10')?.waypoint, 'app/waypoint', 'the labelled service uses the waypoint');
  t.same(state.waypointPods('app/waypoint').map((w) => w.ip), ['127.216.2.50'], 'its pod is the waypoint endpoint');
  t.equal(state.workloadByIp('127.216.2.50')?.captured, false, 'and is not captured');
  t.same(state.httpRoutes[0]?.parents, [{ kind: 'Service', namespace: 'app', name: 'echo', port: undefined }], 'the route attaches to the service');

  // The waypoint itself in cluster mode: ready once it has synced, found its Gateway and got its certificate.
  const waypoint = await WaypointApp.start(
    waypointConfigFromFlags({
      name: 'waypoint', namespace: 'app', kube: true, kubeconfig: join(dir, 'kubeconfig'), caDir: join(dir, 'ca'),
      listen: '127.216.2.50:0', admin: '127.0.0.1:0', metrics: '127.0.0.1:0', readiness: '127.0.0.1:0', drainSeconds: 1,
    }),
    pino({ level: 'silent' }),
  );
  t.teardown(() => waypoint.close(100));
  await until('waypoint ready', () => waypoint.pending().length === 0);
  const dump = waypoint.configDump() as { services: { uid: string; vip: string; routes: string[] }[] };
  t.same(dump.services.map((s) => [s.uid, s.vip, s.routes]), [['app/echo', '10.96.216.10', ['app/echo']]], 'it serves the labelled service and its route');
});
