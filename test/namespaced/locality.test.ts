// Service endpoints as Kubernetes users expect, in three-node labs with two zones: only ready endpoints
// take new connections (within 1 s of the change, open ones stay up), and trafficDistribution PreferClose
// keeps every connection in the client's zone until that zone has no ready endpoint. On a real control
// plane (readiness flipped through the pod's status subresource) and in file mode (the manifests edited).
// Needs root, and Go for the first part; skipped saying which otherwise.
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { parseAllDocuments, stringify } from 'yaml';
import { labKubectl } from '../../src/lab/kube-lab.js';
import type { LabState } from '../../src/lab/lab.js';
import { probeInPod, spawnProbe, startHttpServers, startProbeServers } from '../../src/lab/probe-runner.js';
import { controlPlaneSkipReason } from '../helpers/control-plane.js';
import { exclusiveLab, labSkipReason, waitFor } from '../helpers/lab-test.js';

const MANIFESTS = fileURLToPath(new URL('../../../manifests/examples/locality/zones.yaml', import.meta.url));
t.setTimeout(900_000);
const CART = '10.96.0.50';

/** COUNT fresh connections (one HTTP request each) from the client to the cart VIP: who answered how often. */
function spread(count: number): Record<string, number> {
  const line = probeInPod('shop/client', 'http-load', CART, '80', String(count), 'GET', '/', 'fresh');
  try {
    const r = JSON.parse(line) as { ok?: boolean; servedBy?: Record<string, number>; statuses?: Record<string, number> };
    return r.ok === true ? (r.servedBy ?? {}) : { failed: count };
  } catch {
    return { failed: count };
  }
}

/** Services with their endpoints' health, as node-1's daemon shows them in config_dump. */
function endpointHealth(state: LabState, service: string): Record<string, string> {
  const netns = state.nodes.find((n) => n.name === 'node-1')?.netns ?? '';
  const script = "fetch('http://127.0.0.1:15000/config_dump').then(r=>r.text()).then(t=>process.stdout.write(t))";
  const dump = JSON.parse(spawnSync('nsenter', [`--net=/run/netns/${netns}`, process.execPath, '-e', script], { encoding: 'utf8' }).stdout) as {
    services: { uid: string; endpoints: { uid: string; ready: boolean; reason: string }[] }[];
  };
  const s = dump.services.find((x) => x.uid === service);
  return Object.fromEntries((s?.endpoints ?? []).map((e) => [e.uid, `${e.ready ? 'ready' : 'not ready'}: ${e.reason}`]));
}

async function startServers(): Promise<void> {
  startHttpServers({ 'shop/cart-a': 'a', 'shop/cart-b': 'b' });
  startProbeServers(['shop/cart-a', 'shop/cart-b']);
  await waitFor('servers', () => spread(1)['a'] === 1, 15_000);
}

/**
 * Sends fresh connections to the cart VIP, one after another, while change() runs; returns the last start
 * time of a connection cart-a answered and the answers to those started more than 1 s after the change.
 */
async function acrossChange(change: () => void): Promise<{ lastToA: number; changedAt: number; after: Record<string, number> }> {
  // For 3 s: about a second before the change, two after.
  const load = spawnProbe('shop/client', 'http-load', CART, '80', '100000', 'GET', '/', 'fresh', 'trace', '3');
  let out = '';
  load.stdout?.on('data', (c: Buffer) => (out += String(c)));
  const exited = new Promise<void>((r) => load.once('exit', () => r()));
  await new Promise((r) => setTimeout(r, 1000));
  const changedAt = Date.now();
  change();
  await exited;
  const order = (JSON.parse(out.trim().split('\n').at(-1) ?? '{}') as { order?: [number, string][] }).order ?? [];
  const after: Record<string, number> = {};
  for (const [at, by] of order) if (at > changedAt + 1000) after[by] = (after[by] ?? 0) + 1;
  return { lastToA: Math.max(0, ...order.filter(([, by]) => by === 'a').map(([at]) => at)), changedAt, after };
}

/** Holds an echo connection through the VIP while body runs; returns how it ended. */
async function holding(body: () => Promise<void>): Promise<{ ended?: string; pongs?: number }> {
  const hold = spawnProbe('shop/client', 'hold', CART, '8080', '8');
  let out = '';
  hold.stdout?.on('data', (c: Buffer) => (out += String(c)));
  await waitFor('held connection', () => out.includes('connected'));
  await body();
  await new Promise<void>((r) => hold.once('exit', () => r()));
  return JSON.parse(out.trim().split('\n').at(-1) ?? '{}') as { ended?: string; pongs?: number };
}

t.test('a real control plane: kubectl flips cart-a not Ready', { skip: labSkipReason ?? controlPlaneSkipReason() ?? false }, async (t) => {
  const state = await exclusiveLab(t, MANIFESTS, { kube: true });
  const kube = state.kube;
  if (kube === undefined) throw new Error('no control plane');
  const setReady = (ready: boolean): void =>
    void labKubectl(kube, ['-n', 'shop', 'patch', 'pod', 'cart-a', '--subresource=status', '-p', JSON.stringify({ status: { conditions: [{ type: 'Ready', status: ready ? 'True' : 'False', reason: ready ? '' : 'ReadinessProbeFailed' }] } })]);
  await startServers();

  t.same(spread(500), { a: 500 }, 'PreferClose: all 500 connections stay in zone eu-west-a (cart-a), none to eu-west-b');
  const held = await holding(async () => {
    const c = await acrossChange(() => setReady(false));
    t.ok(c.lastToA > c.changedAt - 1000 && c.lastToA < c.changedAt + 1000, `the last new connection to cart-a started ${c.lastToA - c.changedAt} ms after the status update (within 1 s)`);
    t.ok(Object.keys(c.after).length === 1 && (c.after['b'] ?? 0) > 0, `every connection started later went to cart-b (${JSON.stringify(c.after)})`);
    t.same(spread(500), { b: 500 }, 'with no ready endpoint in its zone, 100% of 500 fail over to cart-b');
  });
  t.equal(held.ended, 'still open', 'the connection opened to cart-a before it became not Ready stayed up');
  t.ok((held.pongs ?? 0) > 20, `and carried traffic throughout (${held.pongs ?? 0} echoes)`);
  t.match(endpointHealth(state, 'shop/cart'), { 'shop/cart-a': /^not ready: Ready=False \(ReadinessProbeFailed\)/, 'shop/cart-b': /^ready: Running and Ready/ }, 'config_dump shows each endpoint and why');
  setReady(true);
  await waitFor('cart-a back', () => spread(1)['a'] === 1, 1000);
  t.same(spread(200), { a: 200 }, 'Ready again: back in zone');

  t.test('a terminating pod takes no new connections', async (t) => {
    // No kubelet confirms the deletion, so the pod stays terminating (deletionTimestamp set) for its grace period.
    labKubectl(kube, ['-n', 'shop', 'delete', 'pod', 'cart-a', '--wait=false', '--grace-period=300']);
    await waitFor('cart-a terminating', () => spread(1)['b'] === 1, 1000);
    t.same(spread(100), { b: 100 }, 'all to cart-b');
    t.match(endpointHealth(state, 'shop/cart'), { 'shop/cart-a': /^not ready: terminating \(deletionTimestamp set\), still serving/ });
  });
});

t.test('file mode: the manifests say cart-a is not Ready', { skip: labSkipReason ?? false }, async (t) => {
  const state = await exclusiveLab(t, MANIFESTS);
  await startServers();
  const original = readFileSync(state.manifests, 'utf8');
  const withCartA = (status: Record<string, unknown>): string =>
    parseAllDocuments(original)
      .map((d) => d.toJS() as { kind?: string; metadata?: { name?: string }; status?: Record<string, unknown> })
      .map((o) => (o.kind === 'Pod' && o.metadata?.name === 'cart-a' ? { ...o, status: { ...o.status, ...status } } : o))
      .map((o) => stringify(o))
      .join('---\n');
  t.same(spread(300), { a: 300 }, 'PreferClose: in zone');
  const held = await holding(async () => {
    const c = await acrossChange(() => writeFileSync(state.manifests, withCartA({ phase: 'Running', conditions: [{ type: 'Ready', status: 'False' }] })));
    t.ok(c.lastToA < c.changedAt + 1000, `the last new connection to cart-a started ${c.lastToA - c.changedAt} ms after the file changed (within 1 s)`);
    t.ok(Object.keys(c.after).length === 1 && (c.after['b'] ?? 0) > 0, `every connection started later went to cart-b (${JSON.stringify(c.after)})`);
    t.same(spread(300), { b: 300 }, '100% fail over');
  });
  t.equal(held.ended, 'still open', 'the open connection stayed up');
  writeFileSync(state.manifests, withCartA({ phase: 'Succeeded' }));
  await new Promise((r) => setTimeout(r, 500));
  t.same(spread(50), { b: 50 }, 'a finished pod gets nothing either');
  writeFileSync(state.manifests, original);
  await waitFor('cart-a back', () => spread(1)['a'] === 1, 1000);
  t.same(spread(100), { a: 100 });
});
