import t from 'tap';
import { State } from '../../src/model/state.js';
import { EndpointPicker } from '../../src/proxy/endpoint-picker.js';
import { buildOutboundRequest, outerSource } from '../../src/proxy/outbound-request.js';
import { parseManifestText } from '../../src/sources/manifests.js';
import { translate } from '../../src/sources/translate.js';
import { meshManifests, podIp, vip } from '../helpers/loopback.js';

const plan = { net: 202 };
const state = new State();
state.replace(translate(parseManifestText('m.yaml', meshManifests(plan)), { trustDomain: 'cluster.local' }));
const ctx = { state, nodeName: 'node-1', hbonePort: 15008, endpoints: new EndpointPicker({ random: () => 0 }) };
const client = state.workloadByIp(podIp(plan, 1, 1))!;

t.test('routing decisions, before any I/O', async (t) => {
  const cross = buildOutboundRequest(ctx, client, { ip: podIp(plan, 2, 1), port: 8080 });
  t.match(cross, { kind: 'hbone', target: { ip: podIp(plan, 2, 1), port: 8080 }, nextHop: { ip: podIp(plan, 2, 1), port: 15008 }, dstIdentities: ['spiffe://cluster.local/ns/app/sa/echo'] });

  const viaVip = buildOutboundRequest(ctx, client, { ip: vip(plan), port: 80 });
  t.match(viaVip, { kind: 'hbone', target: { port: 8080 }, service: { uid: 'app/echo' } }, 'service port 80 → named target port http=8080');

  t.match(buildOutboundRequest(ctx, client, { ip: podIp(plan, 1, 2), port: 8080 }), { kind: 'local' }, 'same node is handled in-process');
  t.match(buildOutboundRequest(ctx, client, { ip: podIp(plan, 2, 3), port: 8080 }), { kind: 'tcp', dstWorkload: { name: 'plain' } }, 'non-mesh pod gets plain TCP');
  t.match(buildOutboundRequest(ctx, client, { ip: '127.202.9.9', port: 22 }), { kind: 'tcp', dstWorkload: undefined }, 'unknown destination passes through');
  t.match(buildOutboundRequest(ctx, client, { ip: vip(plan), port: 81 }), { kind: 'reject', flag: 'NO_SERVICE_PORT' });
  t.match(buildOutboundRequest(ctx, client, { ip: '127.202.1.254', port: 15008 }), { kind: 'reject', flag: 'RECURSION' });
});

t.test('a service with no endpoints is rejected, not passed through', async (t) => {
  const s = new State();
  s.replace(translate(parseManifestText('m.yaml', meshManifests(plan).replace('selector: { app: echo }', 'selector: { app: nobody }')), { trustDomain: 'cluster.local' }));
  t.match(buildOutboundRequest({ ...ctx, state: s }, client, { ip: vip(plan), port: 80 }), { kind: 'reject', flag: 'NO_HEALTHY_UPSTREAM' });
});

t.test('regression: connections to a daemon port loop back into a daemon and are refused on outbound', async (t) => {
  const loops: [string, { ip: string; port: number }][] = [
    ['the node address', { ip: '127.202.1.254', port: 15001 }],
    ['the client pod itself', { ip: podIp(plan, 1, 1), port: 15006 }],
    ["another local pod's :15008", { ip: podIp(plan, 1, 2), port: 15008 }],
    ["a remote captured pod's :15008", { ip: podIp(plan, 2, 1), port: 15008 }],
  ];
  for (const [what, dst] of loops) {
    t.match(buildOutboundRequest(ctx, client, dst), { kind: 'reject', flag: 'RECURSION' }, what);
  }
  // Not the daemon: a pod outside the mesh may serve 15008, and other ports of captured pods are fine.
  t.match(buildOutboundRequest(ctx, client, { ip: podIp(plan, 2, 3), port: 15008 }), { kind: 'tcp' }, 'a non-mesh pod on 15008');
  t.match(buildOutboundRequest(ctx, client, { ip: podIp(plan, 1, 2), port: 15009 }), { kind: 'local' }, 'a local pod on another port');
  const viaService = new State();
  viaService.replace(
    translate(parseManifestText('m.yaml', meshManifests(plan).replace('targetPort: http', 'targetPort: 15008')), { trustDomain: 'cluster.local' }),
  );
  t.match(buildOutboundRequest({ ...ctx, state: viaService }, client, { ip: vip(plan), port: 80 }), { kind: 'reject', flag: 'RECURSION' }, 'a service whose target port is 15008');
});

t.test('dual stack: the endpoint address of the family the client used, HBONE to it', async (t) => {
  const manifests = `apiVersion: v1
kind: Namespace
metadata: { name: app, labels: { istio.io/dataplane-mode: ambient } }
---
apiVersion: v1
kind: Node
metadata: { name: node-1 }
status: { addresses: [{ type: InternalIP, address: 172.18.0.11 }, { type: InternalIP, address: "fd00:172:18::11" }] }
---
apiVersion: v1
kind: Pod
metadata: { name: client, namespace: app }
spec: { nodeName: node-1, containers: [{ name: c }] }
status: { podIP: 10.244.1.10, podIPs: [{ ip: 10.244.1.10 }, { ip: "fd00:10:244:1::10" }] }
---
apiVersion: v1
kind: Pod
metadata: { name: dual, namespace: app, labels: { app: web } }
spec: { nodeName: node-2, containers: [{ name: c }] }
status: { podIP: 10.244.2.10, podIPs: [{ ip: 10.244.2.10 }, { ip: "FD00:10:244:2:0::10" }] }
---
apiVersion: v1
kind: Pod
metadata: { name: v4only, namespace: app, labels: { app: web } }
spec: { nodeName: node-2, containers: [{ name: c }] }
status: { podIP: 10.244.2.11 }
---
apiVersion: v1
kind: Service
metadata: { name: web, namespace: app }
spec:
  ipFamilyPolicy: PreferDualStack
  clusterIP: 10.96.0.30
  clusterIPs: [10.96.0.30, "fd00:10:96::30"]
  selector: { app: web }
  ports: [{ port: 80, targetPort: 8080 }]
`;
  const s = new State();
  s.replace(translate(parseManifestText('dual.yaml', manifests), { trustDomain: 'cluster.local' }));
  const me = s.workloadByIp('fd00:10:244:1::10');
  t.equal(me?.name, 'client', 'a pod is found by either of its addresses');
  t.same(me?.ips, ['10.244.1.10', 'fd00:10:244:1::10']);
  t.same(s.workloadByIp('10.244.2.10')?.ips, ['10.244.2.10', 'fd00:10:244:2::10'], 'addresses are read in RFC 5952 form');
  t.equal(s.serviceByVip('fd00:10:96::30')?.uid, 'app/web', 'a Service is found by either cluster IP');
  const dctx = { state: s, nodeName: 'node-1', hbonePort: 15008, endpoints: new EndpointPicker({ random: () => 0 }) };
  for (let i = 0; i < 10; i++) {
    t.match(
      buildOutboundRequest(dctx, me!, { ip: 'fd00:10:96::30', port: 80 }),
      { kind: 'hbone', target: { ip: 'fd00:10:244:2::10', port: 8080 }, nextHop: { ip: 'fd00:10:244:2::10', port: 15008 }, dstWorkload: { name: 'dual' } },
      'over IPv6 only the pod with an IPv6 address is a candidate, reached at it',
    );
  }
  const picked = new Set<string>();
  for (let i = 0; i < 20; i++) {
    const r = buildOutboundRequest({ ...dctx, endpoints: new EndpointPicker() }, me!, { ip: '10.96.0.30', port: 80 });
    if (r.kind === 'hbone') picked.add(r.target.ip);
  }
  t.same([...picked].sort(), ['10.244.2.10', '10.244.2.11'], 'over IPv4 both pods, at their IPv4 addresses');
  t.match(buildOutboundRequest(dctx, me!, { ip: 'fd00:10:244:2::10', port: 9000 }), { kind: 'hbone', nextHop: { ip: 'fd00:10:244:2::10', port: 15008 } }, 'a pod addressed directly by IPv6 is reached over IPv6');
  t.match(buildOutboundRequest(dctx, me!, { ip: 'fd00:172:18::11', port: 15008 }), { kind: 'reject', flag: 'RECURSION' }, "the node's IPv6 address is the daemon too");
});

t.test('dual-stack fields are validated, naming the field', async (t) => {
  const bad = (status: string): (() => unknown) => () =>
    parseManifestText('bad.yaml', `apiVersion: v1\nkind: Pod\nmetadata: { name: p, namespace: app }\nspec: { nodeName: n, containers: [{ name: c }] }\nstatus: ${status}\n`);
  t.throws(bad('{ podIP: 10.0.0.1, podIPs: [{ ip: 10.0.0.1 }, { ip: 10.0.0.2 }] }'), { code: 'MANIFEST_FIELD', field: 'status.podIPs[1]', message: /bad\.yaml.*a second IPv4 address/ });
  t.throws(bad('{ podIPs: [{ ip: "fd00::zz" }] }'), { code: 'MANIFEST_FIELD', field: 'status.podIPs[0].ip', message: /bad\.yaml.*not an IP address/ });
});

t.test('the outer HBONE connection leaves from the client address of the next hop family', async (t) => {
  const ips = ['10.244.1.10', 'fd00:10:244:1::10'];
  t.equal(outerSource('fd00:10:244:1::10', ips, 'fd00:10:244:2::10'), 'fd00:10:244:1::10', 'same family: the connection source');
  t.equal(outerSource('fd00:10:244:1::10', ips, '10.244.2.20'), '10.244.1.10', 'an IPv4 waypoint: the client pod IPv4 address');
  t.equal(outerSource('fd00:10:244:1::99', ['fd00:10:244:1::99'], '10.244.2.20'), undefined, 'an IPv6-only client: the node address');
});
