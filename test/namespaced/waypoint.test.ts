// Waypoints end to end in the lab: eBPF capture sends the client's plain HTTP to its node's daemon,
// HBONE carries it to the waypoint pod (VIP as :authority), the waypoint applies the HTTPRoute and the
// L7 policy and opens HBONE to the chosen pod with its own identity. Needs root; skipped otherwise.
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { labStatus, type LabState } from '../../src/lab/lab.js';
import { probeInPod, startHttpServers } from '../../src/lab/probe-runner.js';
import { exclusiveLab, labSkipReason, logLines, metricsIn, observeLab, waitFor } from '../helpers/lab-test.js';

const MANIFESTS = fileURLToPath(new URL('../../../manifests/examples/waypoint/bookinfo.yaml', import.meta.url));
const REVIEWS = '10.96.0.30';
const TCP_SERVER = '10.96.0.40';
const WAYPOINT_ID = 'spiffe://cluster.local/ns/bookinfo/sa/waypoint';


interface Load {
  ok: boolean;
  error?: string;
  statuses: Record<string, number>;
  servedBy: Record<string, number>;
}

function load(pod: string, ip: string, count: number, method = 'GET', path = '/', fresh = false): Load {
  const line = probeInPod(pod, 'http-load', ip, '9080', String(count), method, path, ...(fresh ? ['fresh'] : []));
  try {
    // A failed probe prints {ok: false, error}: no counts.
    return { statuses: {}, servedBy: {}, ...(JSON.parse(line) as Partial<Load>), ok: (JSON.parse(line) as Partial<Load>).ok === true };
  } catch {
    return { ok: false, error: `probe printed ${JSON.stringify(line)}`, statuses: {}, servedBy: {} };
  }
}

const nodeLog = (state: LabState, node: string): string => state.nodes.find((n) => n.name === node)?.log ?? '';
const waypointLog = (state: LabState): string => state.waypoints?.[0]?.log ?? '';

const waypointMetrics = (state: LabState): string => metricsIn(state.pods.find((p) => p.name === 'waypoint-0')?.netns ?? '');

t.test('waypoints in a two-node lab', { skip: labSkipReason ?? false }, async (t) => {
  const state = await exclusiveLab(t, MANIFESTS);
  t.equal(state.waypoints?.length, 1, 'the lab runs the waypoint declared in the manifests');
  t.same(labStatus().waypoints.map((w) => [w.pod, w.ready]), [['bookinfo/waypoint-0', true]], 'lab status shows it ready');
  startHttpServers({ 'bookinfo/reviews-v1': 'v1', 'bookinfo/reviews-v2': 'v2', 'tcp-only/tcp-server': 'tcp-server' });
  await waitFor('http servers', () => load('bookinfo/productpage', '10.244.2.11', 1).ok && load('tcp-only/tcp-client', TCP_SERVER, 1).ok, 15_000);

  t.test('canary: 1000 requests split 90/10 by the HTTPRoute (within ±5 points)', async (t) => {
    const r = load('bookinfo/productpage', REVIEWS, 1000);
    t.same(r.statuses, { 200: 1000 }, 'every request answered');
    const v1 = r.servedBy['v1'] ?? 0;
    const v2 = r.servedBy['v2'] ?? 0;
    t.equal(v1 + v2, 1000);
    // Envoy-style real randomness: 1000 draws at p = 0.9 have sd 9.5, so [850, 950] is ±5.3 sd (a false
    // failure about once in 10^7 runs) and still fails a split that is 80/20 or 100/0.
    t.ok(v1 >= 850 && v1 <= 950, `v1 got ${v1 / 10}% (v2 ${v2 / 10}%)`);
  });

  t.test('L7 DENY on POST /admin blocks only that', async (t) => {
    t.same(load('bookinfo/productpage', REVIEWS, 5, 'POST', '/admin/users').statuses, { 403: 5 }, 'POST /admin/users: 403');
    t.same(load('bookinfo/productpage', REVIEWS, 5, 'POST', '/admin').statuses, { 403: 5 }, 'POST /admin: 403');
    t.same(load('bookinfo/productpage', REVIEWS, 5, 'GET', '/admin/users').statuses, { 200: 5 }, 'GET /admin/users: 200');
    t.same(load('bookinfo/productpage', REVIEWS, 5, 'POST', '/reviews').statuses, { 200: 5 }, 'POST /reviews: 200');
    t.same(load('bookinfo/productpage', REVIEWS, 5, 'POST', '/administrator').statuses, { 200: 5 }, 'POST /administrator is not /admin/*: 200');
  });

  t.test('the path: client daemon → waypoint (VIP authority) → destination daemon, waypoint identity', async (t) => {
    const requests = logLines(waypointLog(state)).filter((l) => l['msg'] === 'request complete' || l['msg'] === 'request failed');
    t.match(requests.find((l) => l['response_code'] === 200), {
      reporter: 'waypoint',
      'src.identity': 'spiffe://cluster.local/ns/bookinfo/sa/productpage',
      'src.addr': /^10\.244\.1\.10:/,
      'dst.addr': `${REVIEWS}:9080`,
      'dst.service': 'bookinfo/reviews',
    }, 'the waypoint saw the client pod, its identity and the VIP it addressed');
    // A connection is logged when it ends, a moment after the client is gone.
    const find = (): Record<string, unknown> | undefined => logLines(nodeLog(state, 'node-1')).find((l) => l['direction'] === 'outbound' && l['dst.service'] === 'bookinfo/reviews');
    await waitFor('the access log line', () => find() !== undefined);
    const outbound = find();
    t.match(outbound, { 'dst.hbone_addr': '10.244.2.10:15008', 'dst.identity': WAYPOINT_ID, 'dst.workload': 'waypoint-0' }, 'node-1 sent the connection to the waypoint pod over HBONE');
    // The waypoint keeps its upstream streams alive, so they are not in the access log yet: the
    // destination's connection metrics show them as soon as they open.
    t.match(
      metricsIn('ztl-node-2'),
      /istio_tcp_connections_opened_total\{reporter="destination",source_workload="waypoint-0",[^}]*source_principal="cluster\.local\/ns\/bookinfo\/sa\/waypoint",[^}]*destination_workload="reviews-v1",[^}]*connection_security_policy="mutual_tls"\} \d+/,
      'node-2 admitted HBONE from the waypoint identity and delivered it to reviews-v1',
    );
    const looped = [...logLines(nodeLog(state, 'node-1')), ...logLines(nodeLog(state, 'node-2'))].filter((l) => l['direction'] === 'outbound' && l['src.workload'] === 'waypoint-0');
    t.same(looped, [], "the waypoint's own traffic is never captured and sent back to it");
  });

  t.test('a namespace without a waypoint stays pure L4', async (t) => {
    t.same(load('tcp-only/tcp-client', TCP_SERVER, 5, 'POST', '/admin/users').statuses, { 200: 5 }, 'no L7 policy applies there');
    t.same(logLines(waypointLog(state)).filter((l) => JSON.stringify(l).includes('tcp-only')), [], 'the waypoint saw none of it');
    // A connection is logged when it ends, a moment after the client is gone.
    const find = (): Record<string, unknown> | undefined => logLines(nodeLog(state, 'node-1')).find((l) => l['direction'] === 'outbound' && l['dst.service'] === 'tcp-only/tcp-server');
    await waitFor('the access log line', () => find() !== undefined);
    const outbound = find();
    t.match(outbound, { 'dst.hbone_addr': '10.244.2.12:15008', 'dst.workload': 'tcp-server' }, 'HBONE straight to the pod');
  });

  t.test('metrics on the waypoint carry reporter="waypoint"', async (t) => {
    const metrics = waypointMetrics(state);
    t.match(metrics, /istio_requests_total\{reporter="waypoint",source_workload="productpage",[^}]*destination_workload="reviews-v1",[^}]*response_code="200"\} \d+/);
    t.match(metrics, /istio_requests_total\{reporter="waypoint"[^}]*response_code="403"\} 10\n/, 'the ten denied requests');
    t.match(metrics, /istio_tcp_connections_opened_total\{reporter="waypoint",source_workload="productpage"/);
  });

  t.test('observe --lab follows the waypoint too', async (t) => {
    const nodes = observeLab(t, 'bookinfo');
    // Keep traffic going until the waypoint's and the client node's followers have both reported (each
    // subscribes at its own pace).
    const both = (): boolean => nodes.has('bookinfo/waypoint') && nodes.has('node-1');
    await waitFor('flows from the waypoint and node-1', () => {
      if (!both()) load('bookinfo/productpage', REVIEWS, 1);
      return both();
    }, 30_000);
    t.ok(both(), `events from the waypoint and the client's node (${[...nodes].join(', ')})`);
  });

  t.test('removing the namespace label sends traffic straight to the pods, at once', async (t) => {
    const file = state.manifests;
    const original = readFileSync(file, 'utf8');
    t.teardown(() => writeFileSync(file, original));
    writeFileSync(file, original.replace(/\n\s+istio\.io\/use-waypoint: waypoint/, ''));
    // The daemons and the waypoint see the change independently: a request in between may fail once.
    await waitFor('L7 policy gone', () => load('bookinfo/productpage', REVIEWS, 1, 'POST', '/admin/users').statuses['200'] === 1, 10_000);
    // Without the waypoint, balancing is per connection (L4), so each request gets its own.
    const r = load('bookinfo/productpage', REVIEWS, 60, 'GET', '/', true);
    t.ok((r.servedBy['v2'] ?? 0) > 15, `no canary any more: both versions get a share (${JSON.stringify(r.servedBy)})`);
    writeFileSync(file, original);
    await waitFor('waypoint back', () => load('bookinfo/productpage', REVIEWS, 1, 'POST', '/admin/users').statuses['403'] === 1, 10_000);
  });
});
