// The endpoint decision as a table: health, internalTrafficPolicy, trafficDistribution, affinity, spread.
import t from 'tap';
import type { EndpointHealth, Workload } from '../../src/model/types.js';
import { chooseEndpoint, NO_POLICY, type ChoicePolicy } from '../../src/proxy/endpoint-choice.js';
import { EndpointPicker } from '../../src/proxy/endpoint-picker.js';
import { podHealth, sliceEndpointHealth } from '../../src/sources/endpoint-health.js';
import type { PodObject } from '../../src/sources/kube-schema.js';

const READY: EndpointHealth = { ready: true, serving: true, terminating: false, reason: 'Running and Ready' };
const NOT_READY: EndpointHealth = { ready: false, serving: false, terminating: false, reason: 'Ready=False' };
const TERMINATING_SERVING: EndpointHealth = { ready: false, serving: true, terminating: true, reason: 'terminating, still serving' };
const TERMINATING_GONE: EndpointHealth = { ready: false, serving: false, terminating: true, reason: 'terminating, not serving' };

function pod(name: string, node: string, zone: string | undefined, health = READY, region: string | undefined = 'r1'): Workload {
  return {
    uid: `app/${name}`, name, namespace: 'app', node, ip: `10.0.0.${name.length}`, ips: [`10.0.0.${name.length}`], serviceAccount: 'sa', identity: `spiffe://td/ns/app/sa/sa`,
    labels: {}, captured: true, namedPorts: {}, waypoint: undefined, implementsWaypoint: undefined, health, locality: { region, zone },
  };
}

const client = { node: 'n1', locality: { region: 'r1', zone: 'z1' }, ip: '10.1.1.1' };
const noLoad = { load: () => 0, sticky: undefined, random: () => 0 };
const policy = (p: Partial<ChoicePolicy>): ChoicePolicy => ({ ...NO_POLICY, ...p });

/** [what, policy, endpoints, the names that may be picked | the refusal] */
const table: [string, ChoicePolicy, Workload[], string[] | RegExp][] = [
  ['ready endpoints only', NO_POLICY, [pod('a', 'n2', 'z1'), pod('b', 'n2', 'z1', NOT_READY)], ['a']],
  ['a terminating pod is left out while another is ready', NO_POLICY, [pod('a', 'n2', 'z1', TERMINATING_SERVING), pod('b', 'n3', 'z2')], ['b']],
  ['all terminating: those still serving are used', NO_POLICY, [pod('a', 'n2', 'z1', TERMINATING_SERVING), pod('b', 'n3', 'z2', TERMINATING_GONE)], ['a']],
  ['all terminating and none serving: refused', NO_POLICY, [pod('a', 'n2', 'z1', TERMINATING_GONE)], /no ready endpoint/],
  ['none ready: refused', NO_POLICY, [pod('a', 'n2', 'z1', NOT_READY), pod('b', 'n3', 'z2', NOT_READY)], /no ready endpoint \(2 not ready\)/],
  ['no endpoints', NO_POLICY, [], /no endpoints/],
  ['PreferClose keeps the client zone', policy({ trafficDistribution: 'PreferClose' }), [pod('a', 'n2', 'z1'), pod('b', 'n3', 'z2'), pod('c', 'n4', 'z1')], ['a', 'c']],
  ['PreferClose fails over when the zone has no ready endpoint', policy({ trafficDistribution: 'PreferClose' }), [pod('a', 'n2', 'z1', NOT_READY), pod('b', 'n3', 'z2')], ['b']],
  ['PreferClose prefers the region over elsewhere', policy({ trafficDistribution: 'PreferClose' }), [pod('a', 'n2', 'z9', READY, 'r2'), pod('b', 'n3', 'z2')], ['b']],
  ['PreferSameZone is PreferClose', policy({ trafficDistribution: 'PreferSameZone' }), [pod('a', 'n2', 'z1'), pod('b', 'n3', 'z2')], ['a']],
  ['PreferSameNode keeps the client node', policy({ trafficDistribution: 'PreferSameNode' }), [pod('a', 'n2', 'z1'), pod('b', 'n1', 'z1')], ['b']],
  ['PreferSameNode falls back to the zone', policy({ trafficDistribution: 'PreferSameNode' }), [pod('a', 'n2', 'z1'), pod('b', 'n3', 'z2'), pod('c', 'n1', 'z1', NOT_READY)], ['a']],
  ['no trafficDistribution: every zone', NO_POLICY, [pod('a', 'n2', 'z1'), pod('b', 'n3', 'z2')], ['a', 'b']],
  ['internalTrafficPolicy Local: this node only', policy({ internalTrafficPolicy: 'Local' }), [pod('a', 'n1', 'z1'), pod('b', 'n2', 'z1')], ['a']],
  ['internalTrafficPolicy Local with none here: refused', policy({ internalTrafficPolicy: 'Local' }), [pod('b', 'n2', 'z1')], /internalTrafficPolicy Local: no endpoint on n1/],
  ['internalTrafficPolicy Local with the local one not ready: refused, no fallback elsewhere', policy({ internalTrafficPolicy: 'Local' }), [pod('a', 'n1', 'z1', NOT_READY), pod('b', 'n2', 'z1')], /no ready endpoint/],
];

t.test('endpoint decisions', async (t) => {
  for (const [what, p, endpoints, expect] of table) {
    const candidates = endpoints.map((e) => ({ endpoint: e, value: 80 }));
    const seen = new Set<string>();
    // Every draw of the random source: the pick must always be one of the allowed names.
    for (const r of [0, 0.26, 0.51, 0.76, 0.99]) {
      const c = chooseEndpoint(p, candidates, client, { ...noLoad, random: () => r });
      if (expect instanceof RegExp) {
        t.notOk(c.ok, `${what}: refused`);
        if (!c.ok) t.match(c.reason, expect, what);
      } else if (c.ok) seen.add(c.endpoint.name);
      else t.fail(`${what}: refused (${c.reason})`);
    }
    if (!(expect instanceof RegExp)) t.same([...seen].sort(), expect, what);
  }
});

t.test('each excluded endpoint says why', async (t) => {
  const c = chooseEndpoint(policy({ trafficDistribution: 'PreferClose' }), [pod('a', 'n2', 'z1'), pod('b', 'n3', 'z2'), pod('cc', 'n2', 'z1', NOT_READY)].map((e) => ({ endpoint: e, value: 1 })), client, noLoad);
  t.same(c.verdicts.map((v) => [v.endpoint.name, v.verdict]), [['a', 'picked'], ['b', 'not preferred'], ['cc', 'excluded']]);
  t.match(c.verdicts[1]?.why, /PreferClose: same region, a closer endpoint is ready/);
  t.equal(c.verdicts[2]?.why, 'Ready=False');
});

t.test('power of two choices: the less loaded of two; open connections spread evenly', async (t) => {
  const three = [pod('a', 'n2', 'z1'), pod('b', 'n3', 'z1'), pod('c', 'n4', 'z1')].map((e) => ({ endpoint: e, value: 1 }));
  const loads: Record<string, number> = { 'app/a': 5, 'app/b': 1, 'app/c': 9 };
  const c = chooseEndpoint(NO_POLICY, three, client, { load: (uid) => loads[uid] ?? 0, sticky: undefined, random: () => 0 });
  t.equal(c.ok && c.endpoint.name, 'b', 'a (5) against b (1): b');
  // 300 long-lived connections through one picker: each endpoint ends with 100 ± a few, where random
  // choice would be off by about ±8 (one sd) and often by 20.
  const picker = new EndpointPicker();
  const counts: Record<string, number> = {};
  for (let i = 0; i < 300; i++) {
    const r = picker.choose({ ...NO_POLICY, uid: 'app/svc' }, three, client);
    if (!r.ok) throw new Error(r.reason);
    picker.opened(r.endpoint.uid);
    counts[r.endpoint.name] = (counts[r.endpoint.name] ?? 0) + 1;
  }
  for (const n of ['a', 'b', 'c']) t.ok(Math.abs((counts[n] ?? 0) - 100) <= 6, `${n}: ${counts[n] ?? 0} of 300`);
  const release = picker.opened('app/a');
  const before = picker.load('app/a');
  release();
  release();
  t.equal(picker.load('app/a'), before - 1, 'a release counts once');
});

t.test('sessionAffinity ClientIP: a client sticks to its endpoint until the timeout, then may move', async (t) => {
  let now = 1_000_000;
  // A seeded generator (Park-Miller): varied draws, the same every run.
  let seed = 7;
  const picker = new EndpointPicker({ now: () => now, random: () => (seed = (seed * 48271) % 2147483647) / 2147483647 });
  const svc = { ...NO_POLICY, uid: 'app/svc', sessionAffinity: { timeoutSeconds: 60 } };
  const two = [pod('a', 'n2', 'z1'), pod('b', 'n3', 'z1')].map((e) => ({ endpoint: e, value: 1 }));
  const pick = (c = client): string => {
    const r = picker.choose(svc, two, c);
    return r.ok ? r.endpoint.name : r.reason;
  };
  const first = pick();
  for (let i = 0; i < 20; i++) {
    now += 30_000; // each connection renews the 60 s
    t.equal(pick(), first, `connection ${i + 2} sticks`);
  }
  const other = pick({ ...client, ip: '10.1.1.2' });
  t.ok(other === 'a' || other === 'b', 'another client gets its own');
  // Not ready any more: the client moves at once, and sticks to the new one.
  const moved = picker.choose(svc, two.map((c) => (c.endpoint.name === first ? { ...c, endpoint: { ...c.endpoint, health: NOT_READY } } : c)), client);
  t.not(moved.ok && moved.endpoint.name, first, 'a sticky endpoint that is not ready is not used');
  now += 61_000;
  const seen = new Set<string>();
  for (let i = 0; i < 10; i++) {
    now += 61_000;
    seen.add(pick());
  }
  t.same([...seen].sort(), ['a', 'b'], 'after each timeout the choice is free again');
});

t.test('pod health, as Kubernetes means it', async (t) => {
  const p = (status: unknown, deletionTimestamp?: string): PodObject =>
    ({ apiVersion: 'v1', kind: 'Pod', metadata: { name: 'p', ...(deletionTimestamp === undefined ? {} : { deletionTimestamp }) }, spec: {}, status }) as PodObject;
  const ready = [{ type: 'Ready', status: 'True' }];
  const rows: [string, PodObject, Partial<EndpointHealth>][] = [
    ['Running and Ready', p({ phase: 'Running', conditions: ready }), { ready: true, serving: true, terminating: false }],
    ['readiness probe failing', p({ phase: 'Running', conditions: [{ type: 'Ready', status: 'False', reason: 'ContainersNotReady' }] }), { ready: false, serving: false, reason: 'Ready=False (ContainersNotReady)' }],
    ['Pending', p({ phase: 'Pending' }), { ready: false, serving: false, reason: 'phase Pending' }],
    ['Succeeded (a finished job)', p({ phase: 'Succeeded', conditions: ready }), { ready: false, serving: false }],
    ['Failed', p({ phase: 'Failed' }), { ready: false, serving: false }],
    ['terminating but still Ready', p({ phase: 'Running', conditions: ready }, '2026-12-01T00:00:00Z'), { ready: false, serving: true, terminating: true }],
    ['terminating and not Ready', p({ phase: 'Running', conditions: [{ type: 'Ready', status: 'False' }] }, '2026-12-01T00:00:00Z'), { ready: false, serving: false, terminating: true }],
    ['a manifest with no status at all', p(undefined), { ready: true, serving: true }],
    ['a manifest with only an IP', p({ podIP: '10.0.0.1' }), { ready: true, serving: true }],
  ];
  for (const [what, pod, expect] of rows) t.match(podHealth(pod), expect, what);
  t.match(sliceEndpointHealth({ addresses: ['10.0.0.1'] }), { ready: true, serving: true, terminating: false }, 'slice: no conditions means ready');
  t.match(sliceEndpointHealth({ addresses: ['10.0.0.1'], conditions: { ready: false, serving: true, terminating: true } }), { ready: false, serving: true, terminating: true }, 'slice: terminating, serving');
  t.match(sliceEndpointHealth({ addresses: ['10.0.0.1'], conditions: { ready: false } }), { ready: false, serving: false }, 'slice: not ready');
});
