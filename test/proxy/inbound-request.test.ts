import t from 'tap';
import type { AuthzDecision, AuthzRequest } from '../../src/authz/hook.js';
import { State } from '../../src/model/state.js';
import { buildInboundRequest } from '../../src/proxy/inbound-request.js';
import { parseManifestText } from '../../src/sources/manifests.js';
import { translate } from '../../src/sources/translate.js';
import { meshManifests, podIp } from '../helpers/loopback.js';

const plan = { net: 203 };
const state = new State();
state.replace(translate(parseManifestText('m.yaml', meshManifests(plan)), { trustDomain: 'cluster.local' }));
const CLIENT_ID = 'spiffe://cluster.local/ns/app/sa/client';
const src = { ip: podIp(plan, 1, 1), port: 40000 };

/** An authorizer that denies port 9999 and remembers what it was asked. */
function authorizer(): { asked: AuthzRequest[]; authorize(r: AuthzRequest): AuthzDecision } {
  const asked: AuthzRequest[] = [];
  return {
    asked,
    authorize: (r) => {
      asked.push(r);
      return r.dst.port === 9999 ? { allow: false, policy: 'app/deny-9999', reason: 'DENY policy app/deny-9999' } : { allow: true, policy: undefined, reason: 'no policy' };
    },
  };
}

t.test('the inbound decision, before any I/O, on node-2', async (t) => {
  const cases: { what: string; dst: { ip: string; port: number }; want: Record<string, unknown>; asksPolicy: boolean }[] = [
    { what: 'a captured pod of this node is connected to', dst: { ip: podIp(plan, 2, 1), port: 8080 }, want: { kind: 'connect', workload: { name: 'echo-a' }, authz: { srcIdentity: CLIENT_ID, dstWorkload: { name: 'echo-a' } } }, asksPolicy: true },
    { what: 'a policy denial is a refusal that names the pod and the policy', dst: { ip: podIp(plan, 2, 2), port: 9999 }, want: { kind: 'refuse', workload: { name: 'echo-b' }, decision: { policy: 'app/deny-9999' }, error: { code: 'PROXY_DENIED' } }, asksPolicy: true },
    { what: 'a pod of another node is no target here', dst: { ip: podIp(plan, 1, 2), port: 8080 }, want: { kind: 'refuse', workload: undefined, error: { code: 'PROXY_UNKNOWN_TARGET' } }, asksPolicy: false },
    { what: 'a pod outside the mesh is no target', dst: { ip: podIp(plan, 2, 3), port: 8080 }, want: { kind: 'refuse', workload: undefined, error: { code: 'PROXY_UNKNOWN_TARGET' } }, asksPolicy: false },
    { what: 'an unknown address is no target', dst: { ip: '127.203.9.9', port: 8080 }, want: { kind: 'refuse', error: { code: 'PROXY_UNKNOWN_TARGET' } }, asksPolicy: false },
    { what: "a captured pod's daemon port loops, before any policy", dst: { ip: podIp(plan, 2, 1), port: 15008 }, want: { kind: 'refuse', workload: { name: 'echo-a' }, error: { code: 'PROXY_RECURSION' } }, asksPolicy: false },
  ];
  for (const c of cases) {
    const authz = authorizer();
    const got = buildInboundRequest({ state, nodeName: 'node-2', authorizer: authz }, src, CLIENT_ID, c.dst);
    t.match(got, { ...c.want, src, srcIdentity: CLIENT_ID, dst: c.dst }, c.what);
    t.equal(authz.asked.length, c.asksPolicy ? 1 : 0, `${c.what}: the policies are asked ${c.asksPolicy ? 'once' : 'not at all'}`);
  }
});

t.test('plaintext sources are decided with no identity', async (t) => {
  const authz = authorizer();
  const got = buildInboundRequest({ state, nodeName: 'node-2', authorizer: authz }, { ip: '10.0.0.7', port: 1 }, undefined, { ip: podIp(plan, 2, 1), port: 8080 });
  t.match(got, { kind: 'connect', authz: { srcIdentity: undefined } });
  t.same(authz.asked.map((r) => r.srcIdentity), [undefined], 'the authorizer sees no identity to match principals against');
});
