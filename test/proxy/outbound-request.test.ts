import t from 'tap';
import { State } from '../../src/model/state.js';
import { EndpointPicker } from '../../src/proxy/endpoint-picker.js';
import { buildOutboundRequest } from '../../src/proxy/outbound-request.js';
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
