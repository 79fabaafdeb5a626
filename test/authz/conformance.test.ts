// Every case of the conformance corpus (test/fixtures/conformance/authz-cases.yaml), through the daemon's own
// path: YAML → manifest validation → State → PolicyEngine. Cases the corpus marks uncertain are skipped, with
// their reason.
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { stringify } from 'yaml';
import { PolicyEngine } from '../../src/authz/engine.js';
import { State } from '../../src/model/state.js';
import { parseManifestText } from '../../src/sources/manifests.js';
import { translate } from '../../src/sources/translate.js';
import { FIXTURE_DIR, loadAuthzCases, type AuthzCase } from '../helpers/conformance.js';

function engineFor(c: AuthzCase): { engine: PolicyEngine; state: State } {
  const d = c.destination;
  const docs: unknown[] = [
    { apiVersion: 'v1', kind: 'Namespace', metadata: { name: d.namespace, labels: { 'istio.io/dataplane-mode': 'ambient' } } },
    {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name: 'dst', namespace: d.namespace, labels: d.labels ?? {} },
      spec: { nodeName: 'node-1', serviceAccountName: d.serviceAccount },
      status: { podIP: d.ip },
    },
    ...c.policies,
  ];
  const text = docs.map((doc) => stringify(doc)).join('---\n');
  const state = new State();
  state.replace(translate(parseManifestText(`${c.name}.yaml`, text), { trustDomain: 'cluster.local' }));
  return { engine: new PolicyEngine({ state }), state };
}

const cases = loadAuthzCases();
t.ok(cases.length > 100, `${cases.length} cases loaded`);

t.test('the corpus copy is the one its README names', async (t) => {
  const readme = readFileSync(join(FIXTURE_DIR, 'README.md'), 'utf8');
  for (const file of ['authz-cases.yaml', 'authz-semantics.md']) {
    const sha = createHash('sha256').update(readFileSync(join(FIXTURE_DIR, file))).digest('hex');
    t.match(readme, `| ${file} | \`${sha}\` |`, `${file}: sha256 recorded`);
  }
});

for (const c of cases) {
  const skip = c.uncertain === true ? `uncertain in the corpus: ${c.uncertain_reason ?? 'no reason given'}` : false;
  t.test(c.name, { skip }, async (t) => {
    const { engine, state } = engineFor(c);
    const dstWorkload = state.workloadByIp(c.destination.ip);
    if (dstWorkload === undefined) throw new Error('destination workload missing');
    const decision = engine.decide({
      src: { ip: c.source.ip, port: 45678 },
      dst: { ip: c.destination.ip, port: c.destination.port },
      srcIdentity: c.source.identity ?? undefined,
      dstWorkload,
    });
    t.equal(decision.allow ? 'allow' : 'deny', c.expect, `${c.why} — got: ${decision.reason}`);
  });
}
