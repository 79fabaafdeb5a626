// The waypoint's decisions without I/O: which traffic uses which waypoint (istiod's label rules), route
// precedence and weights (Gateway API), and L7 AuthorizationPolicy with targetRefs (Istio semantics).
import t from 'tap';
import { State } from '../../src/model/state.js';
import type { HttpRoute } from '../../src/model/types.js';
import { buildOutboundRequest } from '../../src/proxy/outbound-request.js';
import { parseManifestText } from '../../src/sources/manifests.js';
import { translate } from '../../src/sources/translate.js';
import { WaypointPolicies } from '../../src/waypoint/policies.js';
import { declaredProtocol, classify } from '../../src/waypoint/protocol.js';
import { EndpointPicker } from '../../src/proxy/endpoint-picker.js';
import { pickBackend, routeProblems, routesForService, selectRule, type RequestInfo } from '../../src/waypoint/routing.js';
import { meshManifests, podIp, vip } from '../helpers/loopback.js';

const plan = { net: 218 };
const gateway = (name: string, ns = 'app', waypointFor?: string): string => `---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: { name: ${name}, namespace: ${ns}${waypointFor === undefined ? '' : `, labels: { istio.io/waypoint-for: ${waypointFor} }`} }
spec: { gatewayClassName: istio-waypoint }
---
apiVersion: v1
kind: Pod
metadata: { name: ${name}-0, namespace: ${ns}, labels: { gateway.networking.k8s.io/gateway-name: ${name} } }
spec: { nodeName: node-2, serviceAccountName: ${name} }
status: { podIP: ${podIp(plan, 2, name === 'wp-all' ? 61 : 60)} }
`;

function stateOf(yaml: string, transform: (m: string) => string = (m) => m): State {
  const s = new State();
  s.replace(translate(parseManifestText('m.yaml', transform(meshManifests(plan, yaml))), { trustDomain: 'cluster.local' }));
  return s;
}

t.test('which traffic uses a waypoint: labels on namespace, service and pod, as istiod decides', async (t) => {
  const nsLabelled = (m: string): string => m.replace('labels: { istio.io/dataplane-mode: ambient }', 'labels: { istio.io/dataplane-mode: ambient, istio.io/use-waypoint: wp }');
  let s = stateOf(gateway('wp'), nsLabelled);
  t.equal(s.serviceByVip(vip(plan))?.waypoint, 'app/wp', 'namespace label: services use it');
  t.equal(s.workloadByIp(podIp(plan, 2, 1))?.waypoint, undefined, 'but not workloads: a waypoint is for services by default');
  t.equal(s.workloadByIp(podIp(plan, 2, 60))?.captured, false, "the waypoint's own pod is never captured");
  t.equal(s.workloadByIp(podIp(plan, 2, 60))?.implementsWaypoint, 'app/wp');

  s = stateOf(gateway('wp', 'app', 'all'), nsLabelled);
  t.equal(s.workloadByIp(podIp(plan, 2, 1))?.waypoint, 'app/wp', 'waypoint-for all: workloads too');

  s = stateOf(gateway('wp'), (m) => nsLabelled(m).replace('metadata: { name: echo, namespace: app }', 'metadata: { name: echo, namespace: app, labels: { istio.io/use-waypoint: none } }'));
  t.equal(s.serviceByVip(vip(plan))?.waypoint, undefined, 'a service labelled none opts out');

  s = stateOf(gateway('wp'), (m) => m.replace('metadata: { name: echo, namespace: app }', 'metadata: { name: echo, namespace: app, labels: { istio.io/use-waypoint: wp } }'));
  t.equal(s.serviceByVip(vip(plan))?.waypoint, 'app/wp', 'a service label alone is enough');

  s = stateOf(gateway('wp', 'shared'), (m) => m.replace('metadata: { name: echo, namespace: app }', 'metadata: { name: echo, namespace: app, labels: { istio.io/use-waypoint: wp, istio.io/use-waypoint-namespace: shared } }'));
  t.equal(s.serviceByVip(vip(plan))?.waypoint, 'shared/wp', 'a waypoint in another namespace');

  s = stateOf('', nsLabelled);
  t.equal(s.serviceByVip(vip(plan))?.waypoint, undefined, 'a label naming no Gateway has no effect (as istiod: traffic stays L4)');

  s = stateOf(gateway('wp').replace('istio-waypoint', 'istio'), nsLabelled);
  t.equal(s.serviceByVip(vip(plan))?.waypoint, undefined, 'a Gateway of another class is not a waypoint');
});

t.test('outbound: a service with a waypoint goes to a waypoint pod, with the VIP as target', async (t) => {
  const s = stateOf(gateway('wp'), (m) => m.replace('metadata: { name: echo, namespace: app }', 'metadata: { name: echo, namespace: app, labels: { istio.io/use-waypoint: wp } }'));
  // random 0: power of two choices between equals takes the first endpoint.
  const ctx = { state: s, nodeName: 'node-1', hbonePort: 15008, endpoints: new EndpointPicker({ random: () => 0 }) };
  const client = s.workloadByIp(podIp(plan, 1, 1));
  if (client === undefined) throw new Error('no client');
  t.match(buildOutboundRequest(ctx, client, { ip: vip(plan), port: 80 }), {
    kind: 'hbone',
    target: { ip: vip(plan), port: 80 },
    nextHop: { ip: podIp(plan, 2, 60), port: 15008 },
    dstIdentities: ['spiffe://cluster.local/ns/app/sa/wp'],
    waypoint: 'app/wp',
    service: { uid: 'app/echo' },
  });
  t.match(buildOutboundRequest(ctx, client, { ip: podIp(plan, 2, 1), port: 8080 }), { kind: 'hbone', nextHop: { ip: podIp(plan, 2, 1) } }, 'the pod IP directly: no waypoint (service-only waypoint)');
  const waypointPod = s.workloadByIp(podIp(plan, 2, 60));
  if (waypointPod === undefined) throw new Error('no waypoint pod');
  const own = buildOutboundRequest({ ...ctx, nodeName: 'node-2' }, waypointPod, { ip: vip(plan), port: 80 });
  t.match(own, { kind: 'local', target: { ip: podIp(plan, 2, 1), port: 8080 } }, "the waypoint's own traffic is never sent back to it");

  const noPods = stateOf(gateway('wp').replace(/---\napiVersion: v1\nkind: Pod[\s\S]*$/, ''), (m) => m.replace('metadata: { name: echo, namespace: app }', 'metadata: { name: echo, namespace: app, labels: { istio.io/use-waypoint: wp } }'));
  t.match(buildOutboundRequest({ ...ctx, state: noPods }, client, { ip: vip(plan), port: 80 }), { kind: 'reject', flag: 'NO_HEALTHY_UPSTREAM' }, 'a waypoint with no pods fails the connection: never around it');
});

const req = (method: string, path: string, headers: Record<string, string> = {}, query = ''): RequestInfo => ({ method, path, query: new URLSearchParams(query), headers });
const route = (rules: HttpRoute['rules']): HttpRoute => ({ uid: 'app/r', namespace: 'app', name: 'r', origin: 'test', parents: [], hostnames: [], rules });
const rule = (index: number, matches: HttpRoute['rules'][number]['matches'], name: string): HttpRoute['rules'][number] => ({
  index,
  matches,
  backends: [{ namespace: 'app', name, port: 80, weight: 1 }],
  requestHeaders: undefined,
  unsupportedFilters: [],
});
const m = (path?: { type: 'Exact' | 'PathPrefix' | 'RegularExpression'; value: string }, extra: Partial<HttpRoute['rules'][number]['matches'][number]> = {}) => ({ path, headers: [], queryParams: [], method: undefined, ...extra });

t.test('HTTPRoute: precedence, prefix by segments, headers, query, method, regex', async (t) => {
  const r = route([
    rule(0, [m({ type: 'PathPrefix', value: '/' })], 'root'),
    rule(1, [m({ type: 'PathPrefix', value: '/api' })], 'api'),
    rule(2, [m({ type: 'PathPrefix', value: '/api/v2' })], 'api-v2'),
    rule(3, [m({ type: 'Exact', value: '/api' })], 'api-exact'),
    rule(4, [m({ type: 'PathPrefix', value: '/api' }, { headers: [{ type: 'Exact', name: 'x-canary', value: 'yes' }] })], 'canary'),
    rule(5, [m({ type: 'PathPrefix', value: '/api' }, { method: 'DELETE' })], 'delete'),
    rule(6, [m({ type: 'RegularExpression', value: '/items/[0-9]+' })], 'items'),
    rule(7, [m(undefined, { queryParams: [{ type: 'Exact', name: 'debug', value: '1' }] })], 'debug'),
  ]);
  const to = (q: RequestInfo): string | undefined => selectRule([r], q)?.rule.backends[0]?.name;
  t.equal(to(req('GET', '/')), 'root');
  t.equal(to(req('GET', '/api')), 'api-exact', 'Exact beats any prefix');
  t.equal(to(req('GET', '/api/v2/x')), 'api-v2', 'longest prefix wins');
  t.equal(to(req('GET', '/apix')), 'root', '"/api" does not match "/apix" (segments)');
  t.equal(to(req('GET', '/api/x', { 'x-canary': 'yes' })), 'canary', 'a header match beats the same prefix without one');
  t.equal(to(req('DELETE', '/api/x', { 'x-canary': 'yes' })), 'delete', 'method is ranked before headers');
  t.equal(to(req('GET', '/items/42')), 'items');
  t.equal(to(req('GET', '/items/4x2')), 'root', 'regex is anchored');
  t.equal(to(req('GET', '/other', {}, 'debug=1')), 'debug', 'query match beats the bare root prefix');
  t.equal(selectRule([route([rule(0, [m({ type: 'Exact', value: '/only' })], 'only')])], req('GET', '/else')), undefined, 'nothing matches: no rule (404)');
});

t.test('GAMMA: producer routes for everyone, a consumer route only for its own namespace; no cross-namespace backends', async (t) => {
  const s = stateOf(`---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: producer, namespace: app }
spec: { parentRefs: [{ group: "", kind: Service, name: echo }], rules: [{ backendRefs: [{ name: echo, port: 80 }] }] }
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: consumer, namespace: legacy }
spec: { parentRefs: [{ group: "", kind: Service, name: echo, namespace: app }], rules: [{ backendRefs: [{ name: echo, namespace: app, port: 80 }] }] }
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: other-port, namespace: app }
spec: { parentRefs: [{ group: "", kind: Service, name: echo, port: 81 }], rules: [{ backendRefs: [{ name: echo, port: 80 }] }] }
`);
  const echo = s.serviceByVip(vip(plan));
  if (echo === undefined) throw new Error('no echo service');
  t.same(routesForService(s.httpRoutes, echo, 80, 'app').map((r) => r.name), ['producer'], 'clients of app: the producer route');
  t.same(routesForService(s.httpRoutes, echo, 80, 'legacy').map((r) => r.name), ['consumer'], "clients of legacy: their own consumer route instead");
  t.same(routesForService(s.httpRoutes, echo, 80, undefined).map((r) => r.name), ['producer'], 'unknown clients: the producer route');
  const consumer = s.httpRoutes.find((r) => r.name === 'consumer');
  t.same(consumer?.rules[0]?.backends, [], 'a backend in another namespace is not used');
  t.match(routeProblems(consumer as HttpRoute), [/backendRef to namespace app \(needs a ReferenceGrant/], 'and is reported (requests get 500)');
});

t.test('weighted backends', async (t) => {
  const backends = [
    { namespace: 'app', name: 'v1', port: 80, weight: 90 },
    { namespace: 'app', name: 'v2', port: 80, weight: 10 },
    { namespace: 'app', name: 'off', port: 80, weight: 0 },
  ];
  t.equal(pickBackend(backends, () => 0)?.name, 'v1');
  t.equal(pickBackend(backends, () => 0.8999)?.name, 'v1');
  t.equal(pickBackend(backends, () => 0.9)?.name, 'v2');
  t.equal(pickBackend(backends, () => 0.99999)?.name, 'v2', 'weight 0 never gets traffic');
  t.equal(pickBackend([{ namespace: 'app', name: 'x', port: 80, weight: 0 }]), undefined, 'all weights 0: no backend (500)');
  t.same(
    routeProblems(route([{ ...rule(0, [m({ type: 'RegularExpression', value: '/(' })], 'bad'), unsupportedFilters: ['filter RequestMirror'] }])),
    ['spec.rules[0].matches[0].path.value: "/(" is not a valid regular expression; it never matches', 'spec.rules[0]: filter RequestMirror is not supported by this waypoint; requests matching the rule get 500'],
    'bad patterns and unsupported filters are reported with their field',
  );
});

t.test('protocol: declared by the service port, else detected from the first bytes', async (t) => {
  const port = (name: string | undefined, appProtocol?: string) => ({ name, port: 80, targetPort: 80, appProtocol });
  t.equal(declaredProtocol(port('http')), 'http');
  t.equal(declaredProtocol(port('grpc-api')), 'h2c');
  t.equal(declaredProtocol(port('web', 'kubernetes.io/h2c')), 'h2c');
  t.equal(declaredProtocol(port('tcp-db')), 'tcp');
  t.equal(declaredProtocol(port('db', 'mysql')), 'tcp');
  t.equal(declaredProtocol(port(undefined)), undefined);
  t.equal(classify(Buffer.from('GET / HTTP/1.1\r\n')), 'http1');
  t.equal(classify(Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n')), 'h2c');
  t.equal(classify(Buffer.from([0x16, 0x03, 0x01, 0x00])), 'tcp', 'a TLS ClientHello is TCP to the waypoint');
});

t.test('L7 policy at the waypoint: targetRefs choose where, Istio decides how', async (t) => {
  const policies = `---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: gw-deny-admin, namespace: app }
spec:
  targetRefs: [{ group: gateway.networking.k8s.io, kind: Gateway, name: wp }]
  action: DENY
  rules: [{ to: [{ operation: { methods: [POST, PUT], paths: [/admin, /admin/*] } }] }]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: echo-allow, namespace: app }
spec:
  targetRefs: [{ kind: Service, group: "", name: echo }]
  rules:
    - from: [{ source: { principals: [cluster.local/ns/app/sa/client] } }]
      to: [{ operation: { hosts: [echo.app.svc.cluster.local], notPaths: [/private*] } }]
    - when: [{ key: "request.headers[x-break-glass]", values: ["yes"] }]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: mesh-wide, namespace: istio-system }
spec:
  targetRefs: [{ group: gateway.networking.k8s.io, kind: GatewayClass, name: istio-waypoint }]
  action: DENY
  rules: [{ to: [{ operation: { paths: [/.env] } }] }]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: ztunnels-own, namespace: app }
spec:
  action: DENY
  rules: [{ to: [{ operation: { ports: ["8080"] } }] }]
`;
  const s = stateOf(gateway('wp') + policies);
  const engine = new WaypointPolicies({ state: s, rootNamespace: 'istio-system', waypoint: { name: 'wp', namespace: 'app' } });
  const echo = s.serviceByVip(vip(plan));
  t.same(engine.applicable(echo).map((a) => a.name).sort(), ['echo-allow', 'gw-deny-admin', 'mesh-wide'], 'Gateway, Service and GatewayClass refs apply; a selector-less policy is ztunnel\'s');
  t.same(engine.applicable(undefined).map((a) => a.name).sort(), ['gw-deny-admin', 'mesh-wide'], 'to a workload: no Service policy');
  const conn = (method: string, path: string, opts: { host?: string; identity?: string; headers?: Record<string, string> } = {}) => ({
    srcIp: podIp(plan, 1, 1),
    srcIdentity: opts.identity ?? 'spiffe://cluster.local/ns/app/sa/client',
    dstIp: vip(plan),
    dstPort: 80,
    http: { host: opts.host ?? 'echo.app.svc.cluster.local:80', method, path, headers: opts.headers ?? {}, remoteIp: podIp(plan, 1, 1) },
  });
  t.match(engine.decide(echo, conn('GET', '/orders')), { allow: true, policy: 'app/echo-allow', rule: 0 });
  t.match(engine.decide(echo, conn('POST', '/admin/users')), { allow: false, policy: 'app/gw-deny-admin' }, 'DENY first');
  t.match(engine.decide(echo, conn('GET', '/admin/users')), { allow: true }, 'the DENY is for writes only');
  t.match(engine.decide(echo, conn('GET', '/.env')), { allow: false, policy: 'istio-system/mesh-wide' }, 'the GatewayClass policy from the root namespace');
  t.match(engine.decide(echo, conn('GET', '/private/x')), { allow: false, reason: 'no ALLOW policy matched' }, 'notPaths excludes');
  t.match(engine.decide(echo, conn('GET', '/orders', { host: 'ECHO.app.svc.cluster.local' })), { allow: true }, 'hosts match case-insensitively, with or without the port');
  t.match(engine.decide(echo, conn('GET', '/orders', { host: 'evil.example' })), { allow: false }, 'another host is not allowed');
  t.match(engine.decide(echo, conn('GET', '/orders', { identity: 'spiffe://cluster.local/ns/app/sa/echo' })), { allow: false }, 'another principal is not allowed');
  t.match(engine.decide(echo, conn('GET', '/private', { identity: 'spiffe://cluster.local/ns/app/sa/echo', headers: { 'x-break-glass': 'yes' } })), { allow: true, rule: 1 }, 'request.headers condition');
  const l4 = { srcIp: podIp(plan, 1, 1), srcIdentity: 'spiffe://cluster.local/ns/app/sa/client', dstIp: vip(plan), dstPort: 80 };
  t.match(engine.decide(echo, l4), { allow: false }, 'a TCP connection never matches a rule with HTTP attributes (ALLOW: more restrictive)');
});
