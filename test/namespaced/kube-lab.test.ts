// `lab up --kube`: the lab on a real control plane (etcd, kube-apiserver, kube-controller-manager in the
// fabric namespace). The lab plays the kubelet (pod and node status); the daemons, the CA and the
// waypoint read the API server with TokenRequest tokens bound to their pods. Changes go in with kubectl.
// Needs root and Go; skipped saying which otherwise.
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { labDown, labStatus, readLabState, type LabState } from '../../src/lab/lab.js';
import { labKubectl } from '../../src/lab/kube-lab.js';
import { probeInPod, spawnProbe, startHttpServers, startProbeServers } from '../../src/lab/probe-runner.js';
import { controlPlaneSkipReason } from '../helpers/control-plane.js';
import { exclusiveLab, labSkipReason, logLines, metricsIn, waitFor } from '../helpers/lab-test.js';

const MANIFESTS = fileURLToPath(new URL('../../../manifests/examples/waypoint/bookinfo.yaml', import.meta.url));
// A cold tool cache builds etcd, kube-apiserver, kube-controller-manager and kubectl first.
t.setTimeout(900_000);
const REVIEWS = '10.96.0.30';
const TCP_CLIENT = '10.244.1.12';
const TCP_SERVER_POD = '10.244.2.12';

interface Load {
  ok: boolean;
  statuses: Record<string, number>;
  servedBy: Record<string, number>;
}

function load(pod: string, ip: string, count: number, method = 'GET', path = '/'): Load {
  const line = probeInPod(pod, 'http-load', ip, '9080', String(count), method, path);
  try {
    const r = JSON.parse(line) as Partial<Load>;
    return { statuses: {}, servedBy: {}, ...r, ok: r.ok === true };
  } catch {
    return { ok: false, statuses: {}, servedBy: {} };
  }
}

function whoami(pod: string, ip: string, timeoutMs = 3000): { ok: boolean; seenAs?: string } {
  try {
    return JSON.parse(probeInPod(pod, 'whoami', ip, '9000', String(timeoutMs))) as { ok: boolean; seenAs?: string };
  } catch {
    return { ok: false };
  }
}

/** Connections node's daemon has opened as the source side. */
function openedBy(node: string): number {
  return [...metricsIn(`ztl-${node}`).matchAll(/^istio_tcp_connections_opened_total\{[^}]*reporter="source"[^}]*\} (\d+)/gm)].reduce((n, m) => n + Number(m[1]), 0);
}

const nodeLog = (state: LabState, node: string): Record<string, unknown>[] => logLines(state.nodes.find((n) => n.name === node)?.log ?? '');

const route = (v1: number, v2: number): string => `apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: reviews, namespace: bookinfo }
spec:
  parentRefs:
  - { group: "", kind: Service, name: reviews, port: 9080 }
  rules:
  - backendRefs:
    - { name: reviews-v1, port: 9080, weight: ${v1} }
    - { name: reviews-v2, port: 9080, weight: ${v2} }
`;

t.test('the lab on a real control plane', { skip: labSkipReason ?? controlPlaneSkipReason() ?? false }, async (t) => {
  // Dual stack: every pod also has an IPv6 address, and the API server's service range has both families.
  const state = await exclusiveLab(t, MANIFESTS, { kube: true, dualStack: true });
  const kube = state.kube;
  if (kube === undefined) throw new Error('lab up --kube left no control plane in the lab state');
  const kubectl = (args: readonly string[], stdin?: string): string => labKubectl(kube, args, stdin);
  startHttpServers({ 'bookinfo/reviews-v1': 'v1', 'bookinfo/reviews-v2': 'v2', 'tcp-only/tcp-server': 'tcp-server' });
  startProbeServers(['tcp-only/tcp-server']);
  await waitFor('servers', () => load('bookinfo/productpage', '10.244.2.11', 1).ok && whoami('tcp-only/tcp-client', TCP_SERVER_POD).ok, 15_000);

  t.test('the objects live in the API server; the daemons, the CA and the waypoint read it', async (t) => {
    t.match(labStatus().controlPlane, { api: 'https://172.18.0.1:6443', running: true }, 'lab status shows the control plane');
    for (const n of state.nodes) t.ok(n.args.includes('--kube') && !n.args.includes('--manifests'), `${n.name}'s daemon runs in --kube mode`);
    const pods = JSON.parse(kubectl(['get', 'pods', '-n', 'bookinfo', '-o', 'json'])) as { items: { metadata: { name: string }; status: { phase: string; podIP: string } }[] };
    t.same(
      Object.fromEntries(pods.items.map((p) => [p.metadata.name, `${p.status.phase} ${p.status.podIP}`])),
      Object.fromEntries(state.pods.filter((p) => p.namespace === 'bookinfo').map((p) => [p.name, `Running ${p.ip}`])),
      'every pod Running with the address the lab gave it',
    );
    const slices = JSON.parse(kubectl(['get', 'endpointslices', '-n', 'bookinfo', '-l', 'kubernetes.io/service-name=reviews', '-o', 'json'])) as { items: { endpoints: { addresses: string[] }[] }[] };
    t.same(slices.items.flatMap((s) => s.endpoints.flatMap((e) => e.addresses)).sort(), ['10.244.1.11', '10.244.2.11'], "the EndpointSlice controller's endpoints for reviews");
    // The CA in --kube mode knew each caller from its token's TokenReview: the node of a daemon's pod, the waypoint's own pod.
    const issued = logLines(readLabState()?.ca.log ?? '').filter((l) => l['msg'] === 'ca issued certificate');
    t.ok(issued.some((l) => l['pod'] === 'bookinfo/waypoint-0' && l['identity'] === 'spiffe://cluster.local/ns/bookinfo/sa/waypoint'), 'the waypoint got its SVID for a token bound to its pod');
    t.ok(issued.some((l) => l['node'] === 'node-2' && l['identity'] === 'spiffe://cluster.local/ns/tcp-only/sa/tcp-server'), "node-2's daemon got its pods' SVIDs");
  });

  t.test('canary 90/10 through the waypoint; kubectl apply moves it to v2', async (t) => {
    const r = load('bookinfo/productpage', REVIEWS, 1000);
    t.same(r.statuses, { 200: 1000 }, 'every request answered');
    const v1 = r.servedBy['v1'] ?? 0;
    // As in test/namespaced/waypoint.test.ts: [850, 950] is ±5.3 sd for 1000 draws at p = 0.9.
    t.ok(v1 >= 850 && v1 <= 950, `v1 got ${v1 / 10}%`);
    kubectl(['apply', '-f', '-'], route(0, 100));
    t.teardown(() => void kubectl(['apply', '-f', '-'], route(90, 10)));
    await waitFor('the new route', () => load('bookinfo/productpage', REVIEWS, 1).servedBy['v2'] === 1 && load('bookinfo/productpage', REVIEWS, 20).servedBy['v2'] === 20, 10_000);
    t.same(load('bookinfo/productpage', REVIEWS, 200).servedBy, { v2: 200 }, 'all of it to v2');
  });

  t.test('IPv6 through the waypoint: a PreferDualStack Service created with kubectl, reached at its IPv6 cluster IP', async (t) => {
    kubectl(['apply', '-f', '-'], `apiVersion: v1
kind: Service
metadata: { name: reviews-dual, namespace: bookinfo }
spec:
  ipFamilyPolicy: PreferDualStack
  ipFamilies: [IPv6, IPv4]
  selector: { app: reviews }
  ports: [{ name: http, port: 9080, targetPort: 9080, appProtocol: http }]
`);
    t.teardown(() => void kubectl(['-n', 'bookinfo', 'delete', 'service', 'reviews-dual']));
    const vip6 = (JSON.parse(kubectl(['-n', 'bookinfo', 'get', 'service', 'reviews-dual', '-o', 'json'])) as { spec: { clusterIPs: string[] } }).spec.clusterIPs[0] ?? '';
    t.match(vip6, /^fd00:10:96::/, `the API server gave it an IPv6 cluster IP first (${vip6})`);
    await waitFor('the IPv6 service', () => load('bookinfo/productpage', vip6, 1).ok, 10_000);
    const r = load('bookinfo/productpage', vip6, 100);
    t.same(r.statuses, { 200: 100 }, 'every request answered');
    t.same(Object.keys(r.servedBy).sort(), ['v1', 'v2'], 'by both versions (no route: the Service spreads)');
    const productpage = state.pods.find((p) => p.name === 'productpage');
    const v6 = productpage?.ips.find((ip) => ip.includes(':')) ?? '?';
    const waypointLog = logLines(readLabState()?.waypoints?.[0]?.log ?? '').filter((l) => l['msg'] === 'request complete' && l['dst.addr'] === `[${vip6}]:9080`);
    t.ok(waypointLog.length >= 100, `the waypoint logged the requests (${waypointLog.length})`);
    t.ok(waypointLog.every((l) => String(l['src.addr']).startsWith(`[${v6}]:`)), `and saw the client by its IPv6 address ${v6} (it listens on both of its own)`);
  });

  t.test('kubectl label takes the namespace out of the mesh and back, live', async (t) => {
    const capturedNow = (): string => String(nodeLog(state, 'node-1').filter((l) => l['msg'] === 'captured workloads updated').at(-1)?.['captured'] ?? '');
    let before = openedBy('node-1');
    t.match(whoami('tcp-only/tcp-client', TCP_SERVER_POD), { ok: true, seenAs: TCP_CLIENT });
    t.equal(openedBy('node-1'), before + 1, 'through the daemon');
    kubectl(['label', 'namespace', 'tcp-only', 'istio.io/dataplane-mode-']);
    t.teardown(() => void kubectl(['label', '--overwrite', 'namespace', 'tcp-only', 'istio.io/dataplane-mode=ambient']));
    await waitFor('capture off', () => !capturedNow().includes(TCP_CLIENT), 1000);
    before = openedBy('node-1');
    t.match(whoami('tcp-only/tcp-client', TCP_SERVER_POD), { ok: true, seenAs: TCP_CLIENT });
    t.equal(openedBy('node-1'), before, 'no longer through the daemon');
    kubectl(['label', 'namespace', 'tcp-only', 'istio.io/dataplane-mode=ambient']);
    await waitFor('capture on', () => capturedNow().includes(TCP_CLIENT), 1000);
    before = openedBy('node-1');
    t.match(whoami('tcp-only/tcp-client', TCP_SERVER_POD), { ok: true, seenAs: TCP_CLIENT });
    t.equal(openedBy('node-1'), before + 1, 'through the daemon again');
  });

  t.test('a DENY policy applied with kubectl closes an open connection and refuses new ones; deleting it restores', async (t) => {
    const hold = spawnProbe('tcp-only/tcp-client', 'hold', TCP_SERVER_POD, '8080', '20');
    let out = '';
    hold.stdout?.on('data', (c: Buffer) => (out += String(c)));
    await waitFor('held connection', () => out.includes('connected'));
    // Pings go every 100 ms: let a few cross before the policy lands.
    await new Promise((r) => setTimeout(r, 300));
    kubectl(['apply', '-f', '-'], `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: deny-client, namespace: tcp-only }
spec:
  action: DENY
  selector: { matchLabels: { app: tcp-server } }
  rules:
  - from: [{ source: { principals: ["cluster.local/ns/tcp-only/sa/tcp-client"] } }]
`);
    await new Promise<void>((r) => hold.once('exit', () => r()));
    const ended = JSON.parse(out.trim().split('\n').at(-1) ?? '{}') as { ended?: string; pongs?: number };
    t.not(ended.ended, 'still open', `the open connection was closed (${ended.ended ?? '?'})`);
    t.ok((ended.pongs ?? 0) > 0, 'it carried traffic before');
    t.match(whoami('tcp-only/tcp-client', TCP_SERVER_POD), { ok: false }, 'a new connection is refused');
    t.ok(nodeLog(state, 'node-2').some((l) => l['msg'] === 'connection denied by policy' && l['policy'] === 'tcp-only/deny-client'), 'node-2 names the deciding policy');
    kubectl(['-n', 'tcp-only', 'delete', 'authorizationpolicy', 'deny-client']);
    await waitFor('policy removed', () => whoami('tcp-only/tcp-client', TCP_SERVER_POD, 2000).ok, 10_000);
    t.pass('deleting the policy restores access');
  });

  t.test('lab down stops the control plane too', async (t) => {
    const pids = Object.values(kube.pids);
    await labDown();
    const alive = pids.filter((p) => {
      try {
        process.kill(p, 0);
        return true;
      } catch {
        return false;
      }
    });
    t.same(alive, [], 'etcd, kube-apiserver and kube-controller-manager are gone');
  });
});
