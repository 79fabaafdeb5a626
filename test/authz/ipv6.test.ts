// Policies over IPv6: ipBlocks and notIpBlocks with IPv6 CIDRs, and IPv4-mapped addresses
// (how a dual-stack socket sees an IPv4 peer) matched as the IPv4 address they carry.
import { pino } from 'pino';
import t from 'tap';
import { PolicyEngine } from '../../src/authz/engine.js';
import { parseCidr } from '../../src/authz/translate.js';
import { State } from '../../src/model/state.js';
import { parseManifestText } from '../../src/sources/manifests.js';
import { translate } from '../../src/sources/translate.js';
import { meshManifests, podIp } from '../helpers/loopback.js';

const plan = { net: 231 };

function engineWith(rules: string, action = 'ALLOW'): (srcIp: string) => boolean {
  const state = new State();
  const policy = `apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: { name: p, namespace: app }\nspec:\n  action: ${action}\n  rules:\n${rules}\n`;
  state.replace(translate(parseManifestText('p.yaml', `${meshManifests(plan)}---\n${policy}`), { trustDomain: 'cluster.local' }));
  const engine = new PolicyEngine({ state, logger: pino({ level: 'silent' }) });
  const dstWorkload = state.workloadByIp(podIp(plan, 2, 1))!;
  return (srcIp) => engine.decide({ src: { ip: srcIp, port: 40000 }, dst: { ip: dstWorkload.ip, port: 8080 }, srcIdentity: undefined, dstWorkload }).allow;
}

t.test('ipBlocks with an IPv6 CIDR allow the sources inside it and no others', async (t) => {
  const allowed = engineWith('  - from: [{ source: { ipBlocks: ["fd00:10:244:1::/64"] } }]');
  t.equal(allowed('fd00:10:244:1::10'), true, 'inside the /64');
  t.equal(allowed('FD00:10:244:1:0:0:0:99'), true, 'any spelling of an address inside');
  t.equal(allowed('fd00:10:244:2::10'), false, 'the next /64');
  t.equal(allowed('10.244.1.10'), false, 'an IPv4 source is never inside an IPv6 block');
});

t.test('a DENY with an IPv6 host address refuses that source only', async (t) => {
  const allowed = engineWith('  - from: [{ source: { ipBlocks: ["fd00:10:244:1::99"] } }]', 'DENY');
  t.equal(allowed('fd00:10:244:1::99'), false);
  t.equal(allowed('fd00:10:244:1::98'), true);
});

t.test('notIpBlocks takes IPv6 CIDRs too', async (t) => {
  // (remoteIpBlocks is an L7 field: a waypoint matches it, with the same CIDR code.)
  const notIn = engineWith('  - from: [{ source: { notIpBlocks: ["fd00::/8"] } }]');
  t.equal(notIn('fd00::1'), false);
  t.equal(notIn('2001:db8::1'), true);
});

t.test('IPv4-mapped IPv6 addresses are treated as IPv4, in sources and in blocks', async (t) => {
  const v4Block = engineWith('  - from: [{ source: { ipBlocks: ["10.244.0.0/16"] } }]');
  t.equal(v4Block('::ffff:10.244.1.10'), true, 'a mapped source inside an IPv4 block');
  t.equal(v4Block('::ffff:10.245.1.10'), false);
  const mappedBlock = engineWith('  - from: [{ source: { ipBlocks: ["::ffff:10.244.0.0/112"] } }]');
  t.equal(mappedBlock('10.244.1.10'), true, 'a block written IPv4-mapped matches the IPv4 source');
  t.equal(mappedBlock('10.245.1.10'), false);
  t.same(parseCidr('::ffff:10.244.0.0/112'), parseCidr('10.244.0.0/16'), 'it is the IPv4 block');
  t.equal(parseCidr('fd00::/129'), undefined, 'an IPv6 prefix over 128 is refused');
});
