// Malformed policies fail closed and are reported with file, policy and field; warnings are logged once.
import { pino } from 'pino';
import t from 'tap';
import { PolicyEngine } from '../../src/authz/engine.js';
import { State } from '../../src/model/state.js';
import { parseManifestText } from '../../src/sources/manifests.js';
import { translate } from '../../src/sources/translate.js';
import { meshManifests, podIp } from '../helpers/loopback.js';

const plan = { net: 209 };
const CLIENT = 'spiffe://cluster.local/ns/app/sa/client';

function setup(policyYaml: string): { engine: PolicyEngine; state: State; logs: Record<string, unknown>[] } {
  const logs: Record<string, unknown>[] = [];
  const logger = pino({ level: 'info' }, { write: (s: string) => logs.push(JSON.parse(s) as Record<string, unknown>) });
  const state = new State();
  state.replace(translate(parseManifestText('policies.yaml', `${meshManifests(plan)}---\n${policyYaml}`), { trustDomain: 'cluster.local' }));
  return { engine: new PolicyEngine({ state, logger }), state, logs };
}

function decide(engine: PolicyEngine, state: State, srcIdentity: string | undefined, port = 8080): boolean {
  const dstWorkload = state.workloadByIp(podIp(plan, 2, 1))!;
  return engine.decide({ src: { ip: podIp(plan, 1, 1), port: 40000 }, dst: { ip: dstWorkload.ip, port }, srcIdentity, dstWorkload }).allow;
}

const policy = (name: string, spec: string): string =>
  `apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: { name: ${name}, namespace: app }\nspec:\n${spec}\n`;

t.test('an ALLOW with an unknown field allows nothing, and the error names file, policy and field', async (t) => {
  const { engine, state, logs } = setup(policy('typo', '  rules:\n  - from: [{ source: { principal: ["cluster.local/ns/app/sa/client"] } }]'));
  t.equal(decide(engine, state, CLIENT), false, 'fails closed');
  const err = logs.find((l) => l['level'] === 50);
  t.match(err, { policy: 'app/typo', file: 'policies.yaml', field: /spec\.rules\[0\]\.from\[0\]\.source/ });
  t.match(String(err?.['msg']), /principal/);
});

t.test('a DENY with a wrong type denies everything it applies to', async (t) => {
  const { engine, state } = setup(policy('bad-type', '  action: DENY\n  rules:\n  - to: [{ operation: { ports: "8080" } }]'));
  t.equal(decide(engine, state, CLIENT, 9999), false);
});

t.test('an unparsable CIDR narrows an ALLOW (as istiod) but makes a DENY fail closed', async (t) => {
  const allow = setup(policy('allow-ip', '  rules:\n  - from: [{ source: { ipBlocks: ["10.0.0.0/33", "127.209.1.1"] } }]'));
  t.equal(decide(allow.engine, allow.state, undefined), true, 'the valid value still matches');
  t.match(allow.engine.policies[0]?.warnings, [/ipBlocks value "10\.0\.0\.0\/33" is not an IP address or CIDR/]);

  const deny = setup(policy('deny-ip', '  action: DENY\n  rules:\n  - from: [{ source: { ipBlocks: ["not-an-ip"] } }]'));
  t.equal(decide(deny.engine, deny.state, CLIENT), false, 'a DENY that would silently become a no-op denies instead');
  t.match(deny.engine.policies[0]?.error, /spec\.rules\[0\] ipBlocks: "not-an-ip" is not an IP address or CIDR/);
});

t.test('warnings are logged once per version of a policy', async (t) => {
  const { state, logs } = setup(policy('l7', '  rules:\n  - to: [{ operation: { methods: ["GET"] } }]'));
  const count = (): number => logs.filter((l) => String(l['msg']).includes('app/l7: rule 0: HTTP attributes (methods)')).length;
  t.equal(count(), 1);
  state.replace(state.snapshot);
  t.equal(count(), 1, 'same policy again: no new warning');
  const changed = policy('l7', '  rules:\n  - to: [{ operation: { methods: ["POST"], ports: ["8080"] } }]');
  state.replace(translate(parseManifestText('policies.yaml', `${meshManifests(plan)}---\n${changed}`), { trustDomain: 'cluster.local' }));
  t.equal(count(), 2, 'a changed version of the policy: warned again');
  state.replace(state.snapshot);
  t.equal(count(), 2, 'and once only');
});

t.test('regression: a State listener registered before the engine already sees the new policies', async (t) => {
  const state = new State();
  const seen: boolean[] = [];
  let engine: PolicyEngine | undefined;
  // Registered first: it runs before the engine hears of the change (re-authorization used to rely on the reverse).
  state.on('change', () => {
    if (engine !== undefined) seen.push(decide(engine, state, CLIENT));
  });
  state.replace(translate(parseManifestText('m.yaml', meshManifests(plan)), { trustDomain: 'cluster.local' }));
  engine = new PolicyEngine({ state });
  t.equal(decide(engine, state, CLIENT), true, 'no policy: allowed');
  state.replace(translate(parseManifestText('m.yaml', `${meshManifests(plan)}---\n${policy('deny', '  action: DENY\n  rules:\n  - from: [{ source: { principals: ["cluster.local/ns/app/sa/client"] } }]')}`), { trustDomain: 'cluster.local' }));
  t.same(seen, [false], 'the earlier listener got the new DENY');
  engine.close();
});
