// `npm run demo:waypoint`: the ambient L7 story in the lab, for a person to read. A waypoint serves the
// bookinfo namespace; an HTTPRoute splits reviews 90/10 between v1 and v2; an L7 policy denies
// POST /admin; a namespace without a waypoint stays pure L4. Then everything is torn down.
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { labStatus, labUp } from '../lab/lab.js';
import { runLabDemo, say, show, sleep } from './demo-kit.js';
import { probeInPod, startHttpServers } from '../lab/probe-runner.js';

const MANIFESTS = fileURLToPath(new URL('../../../manifests/examples/waypoint/bookinfo.yaml', import.meta.url));

function load(pod: string, ip: string, count: number, method = 'GET', path = '/'): { statuses: Record<string, number>; servedBy: Record<string, number> } {
  return JSON.parse(probeInPod(pod, 'http-load', ip, '9080', String(count), method, path)) as { statuses: Record<string, number>; servedBy: Record<string, number> };
}

runLabDemo('waypoint demo', async () => {
  say('1. The lab: two nodes with a ztunnel-ts daemon each, and the waypoint of namespace bookinfo in pod waypoint-0');
  const state = await labUp(MANIFESTS);
  for (const p of labStatus().pods) show(`pod  ${p.namespace}/${p.name} ${p.ip} on ${p.node}`);
  startHttpServers({ 'bookinfo/reviews-v1': 'v1', 'bookinfo/reviews-v2': 'v2', 'tcp-only/tcp-server': 'tcp-server' });
  await sleep(800);

  say('2. productpage sends 1000 plain HTTP requests to the reviews service (10.96.0.30:9080) on one connection');
  const canary = load('bookinfo/productpage', '10.96.0.30', 1000);
  show(`answered by: ${JSON.stringify(canary.servedBy)}   statuses: ${JSON.stringify(canary.statuses)}`);
  show('the HTTPRoute asks for 90/10; ztunnel alone balances per connection, the waypoint per request');

  say('3. The L7 policy on the waypoint denies POST /admin, and nothing else');
  show(`POST /admin/users -> ${JSON.stringify(load('bookinfo/productpage', '10.96.0.30', 1, 'POST', '/admin/users').statuses)}`);
  show(`GET  /admin/users -> ${JSON.stringify(load('bookinfo/productpage', '10.96.0.30', 1, 'GET', '/admin/users').statuses)}`);
  show(`POST /reviews     -> ${JSON.stringify(load('bookinfo/productpage', '10.96.0.30', 1, 'POST', '/reviews').statuses)}`);
  const log = state.waypoints?.[0]?.log ?? '';
  const denied = readFileSync(log, 'utf8').split('\n').filter((l) => l.includes('"response_code":403')).at(-1);
  if (denied !== undefined) {
    const d = JSON.parse(denied) as Record<string, unknown>;
    show(`waypoint access log: ${String(d['src.identity'])} ${String(d['method'])} ${String(d['path'])} -> ${String(d['response_code'])} (${String(d['reason'])})`);
  }

  say('4. Namespace tcp-only has no waypoint: the same POST /admin is plain L4 between the two daemons');
  show(`POST /admin/users -> ${JSON.stringify(load('tcp-only/tcp-client', '10.96.0.40', 1, 'POST', '/admin/users').statuses)}`);
}, 5);
