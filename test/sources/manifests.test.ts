import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import t from 'tap';
import { State } from '../../src/model/state.js';
import { ManifestError } from '../../src/sources/errors.js';
import { ManifestSource, parseManifestText } from '../../src/sources/manifests.js';
import { translate } from '../../src/sources/translate.js';
import { meshManifests } from '../helpers/loopback.js';

const plan = { net: 201 };

t.test('translates namespaces, pods, services and nodes into the model', async (t) => {
  const objects = parseManifestText('mesh.yaml', meshManifests(plan));
  const state = new State();
  state.replace(translate(objects, { trustDomain: 'cluster.local' }));
  const client = state.workloadByIp('127.201.1.1');
  t.equal(client?.identity, 'spiffe://cluster.local/ns/app/sa/client');
  t.equal(client?.node, 'node-1');
  t.equal(client?.captured, true, 'ambient namespace captures its pods');
  t.equal(state.workloadByIp('127.201.2.3')?.captured, false, 'legacy namespace is not captured');
  const svc = state.serviceByVip('10.96.201.10');
  t.ok(svc);
  t.same(state.endpointsOf(svc!).map((w) => w.name).sort(), ['echo-a', 'echo-b']);
  t.equal(state.node('node-2')?.ip, '127.201.2.254');
  t.same(state.workloadsWithIdentity('spiffe://cluster.local/ns/app/sa/echo').map((w) => w.name).sort(), ['echo-a', 'echo-b', 'local-echo']);
});

t.test('pod label dataplane-mode=none opts a pod out; pods without an IP are not workloads', async (t) => {
  const text = `apiVersion: v1
kind: Namespace
metadata: { name: app, labels: { istio.io/dataplane-mode: ambient } }
---
apiVersion: v1
kind: Pod
metadata: { name: out, namespace: app, labels: { istio.io/dataplane-mode: none } }
spec: { nodeName: n1 }
status: { podIP: 10.0.0.1 }
---
apiVersion: v1
kind: Pod
metadata: { name: pending, namespace: app }
spec: { nodeName: n1 }
`;
  const snap = translate(parseManifestText('f.yaml', text), { trustDomain: 'cluster.local' });
  t.equal(snap.workloads.length, 1);
  t.equal(snap.workloads[0]?.captured, false);
});

t.test('bad input names the file, the object and the field', async (t) => {
  const cases: [string, RegExp][] = [
    ['apiVersion: v1\nkind: Service\nmetadata: { name: web, namespace: app }\nspec: { ports: [{ port: "eighty" }] }\n', /bad\.yaml: Service app\/web \(document 1\): spec\.ports\[0\]\.port: /],
    ['apiVersion: v1\nkind: Pod\nmetadata: { name: p }\nspec: {}\nstatus: { podIP: 10.0.0.300 }\n', /bad\.yaml: Pod p \(document 1\): status\.podIP: not an IP address/],
    ['kind: Pod\nmetadata: { name: p\n', /bad\.yaml: line \d+ column \d+/],
    ['apiVersion: v1\nmetadata: { name: p }\n', /bad\.yaml: object p \(document 1\): kind: missing kind/],
    [
      'apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: { name: r, namespace: app }\nspec:\n  parentRefs: [{ kind: Service, name: s }]\n  rules: [{ backendRefs: [{ name: v1, weight: -5 }] }]\n',
      /bad\.yaml: HTTPRoute app\/r \(document 1\): spec\.rules\[0\]\.backendRefs\[0\]\.weight: /,
    ],
    [
      'apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: { name: r, namespace: app }\nspec:\n  parentRefs: [{ kind: Service, name: s }]\n  rules: [{ matchs: [] }]\n',
      /bad\.yaml: HTTPRoute app\/r \(document 1\): spec\.rules\[0\]: Unrecognized key: "matchs"/,
    ],
    ['apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: { name: w, namespace: app }\nspec: {}\n', /bad\.yaml: Gateway app\/w \(document 1\): spec\.gatewayClassName: /],
    // Found by the property test: an alias to no anchor used to escape as a bare ReferenceError.
    ['kind: Pod\nmetadata: *missing\n', /bad\.yaml: document 1: Unresolved alias/],
    // A YAML bomb: more aliases than the parser allows.
    [`a: &a [x, x, x, x, x, x, x, x, x, x]\nb: &b [${Array(10).fill('*a').join(', ')}]\nc: &c [${Array(10).fill('*b').join(', ')}]\nd: [${Array(10).fill('*c').join(', ')}]\n`, /bad\.yaml: document 1: /],
  ];
  for (const [text, re] of cases) {
    const err = t.throws(() => parseManifestText('bad.yaml', text)) as unknown;
    t.ok(err instanceof ManifestError);
    t.match((err as Error).message, re);
  }
});

t.test('watched directory: a bad edit keeps the last good state and is logged; a fix applies', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'ztunnel-ts-manifests-'));
  const file = join(dir, 'mesh.yaml');
  writeFileSync(file, meshManifests(plan));
  const lines: Record<string, unknown>[] = [];
  const logger = pino({ level: 'info' }, { write: (s: string) => lines.push(JSON.parse(s) as Record<string, unknown>) });
  const state = new State();
  const source = new ManifestSource({ path: dir, state, trustDomain: 'cluster.local', logger, debounceMs: 20 });
  await source.start();
  t.teardown(() => source.close());
  t.equal(state.snapshot.workloads.length, 5);

  const changed = (): Promise<void> => new Promise((r) => state.once('change', () => r()));
  let next = changed();
  writeFileSync(file, meshManifests(plan).replace('spec: { clusterIP: 10.96.201.10,', 'spec: { clusterIP: 10.96.201.999,'));
  await next;
  t.ok(state.serviceByVip('10.96.201.10'), 'old service still served');
  t.equal(state.snapshot.workloads.length, 5, 'old workloads still served');
  const err = lines.find((l) => l['level'] === 50);
  t.equal(err?.['file'], file);
  t.equal(err?.['field'], 'spec.clusterIP');
  t.match(String(err?.['msg']), /Service app\/echo/);
  t.equal(source.errors.length, 1);

  next = changed();
  writeFileSync(file, meshManifests(plan).replace('selector: { app: echo }', 'selector: { app: local-echo }'));
  await next;
  t.same(state.endpointsOf(state.serviceByVip('10.96.201.10')!).map((w) => w.name), ['local-echo']);
  t.equal(source.errors.length, 0);
});
