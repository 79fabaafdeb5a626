// One kind's cache against an API server speaking list/watch: pages, resumed watches, 410 Gone, and the
// ways a watch can fail without a word (a silent connection, a line that is not JSON, a watch that ends
// at once), none of which may lose an event.
import { chmodSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { KubeApi } from '../../../src/sources/kube-api/api-client.js';
import { loadApiEndpoint } from '../../../src/sources/kube-api/kubeconfig.js';
import { Reflector, trimmed } from '../../../src/sources/kube-api/reflector.js';
import { FakeApiServer } from '../../helpers/fake-apiserver.js';

const PODS = '/api/v1/pods';
const pod = (name: string, extra: Record<string, unknown> = {}): { metadata: { name: string; namespace: string } } & Record<string, unknown> => ({
  metadata: { name, namespace: 'app' },
  spec: { nodeName: 'node-1' },
  ...extra,
});

async function until(what: string, pred: () => boolean, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

async function setup(t: Test, opts: { watchSeconds?: () => number; watchGraceMs?: number } = {}) {
  const api = new FakeApiServer();
  await api.start();
  const dir = mkdtempSync(join(tmpdir(), 'ztunnel-ts-reflector-'));
  api.writeKubeconfig(join(dir, 'kubeconfig'));
  const client = new KubeApi(loadApiEndpoint(join(dir, 'kubeconfig')));
  const seen = { lists: 0, changes: 0, watching: 0 };
  const reflector = new Reflector({
    api: client,
    path: PODS,
    hooks: { listed: (_n, lists) => (seen.lists = lists), changed: () => (seen.changes += 1), watching: () => (seen.watching += 1) },
    ...opts,
  });
  const stop = new AbortController();
  const names = (): string[] => reflector.list().map((o) => o.metadata?.name ?? '').sort();
  // As KubeSource does: a failed run is run again (here after 50 ms), from where it stopped.
  const failures: unknown[] = [];
  const runs: Promise<void>[] = [];
  const run = (): void => {
    runs.push(
      reflector.run(stop.signal).catch(async (err: unknown) => {
        failures.push(err);
        await new Promise((r) => setTimeout(r, 50));
        if (!stop.signal.aborted) run();
      }),
    );
  };
  t.teardown(async () => {
    stop.abort();
    await Promise.all(runs);
    client.close();
    await api.close();
  });
  return { api, dir, reflector, seen, names, run, failures, stop };
}

t.test('lists in pages, keeps one snapshot, and drops what nobody reads', async (t) => {
  const { api, names, run, seen, reflector } = await setup(t);
  for (let i = 0; i < 1203; i++) api.upsert(PODS, pod(`p${i}`, { metadata: { name: `p${i}`, namespace: 'app', managedFields: [{ manager: 'kubectl' }], annotations: { 'kubectl.kubernetes.io/last-applied-configuration': '{}', keep: 'me' } } }));
  run();
  await until('listed', () => seen.lists === 1);
  t.equal(names().length, 1203, 'every page');
  t.equal(api.requests.filter((r) => r === `list ${PODS}`).length, 3, 'pages of 500');
  const one = reflector.list()[0];
  t.equal(one?.metadata?.['managedFields'], undefined, 'managedFields dropped');
  t.same(one?.metadata?.['annotations'], { keep: 'me' }, "kubectl's last-applied copy dropped, other annotations kept");
  t.same(trimmed({ metadata: { name: 'x' } }), { metadata: { name: 'x' } }, 'an object with neither is itself');
});

t.test('a dropped watch resumes from the last version, with no list and no lost event', async (t) => {
  const { api, names, run, seen } = await setup(t);
  api.upsert(PODS, pod('a'));
  run();
  await until('listed', () => seen.lists === 1 && seen.watching === 1);
  api.upsert(PODS, pod('b'));
  await until('b', () => names().includes('b'));
  api.dropWatches();
  api.upsertSilently(PODS, pod('c'));
  api.remove(PODS, 'app', 'a');
  await until('resumed', () => names().join() === 'b,c');
  t.equal(seen.lists, 1, 'no second list');
  t.equal(api.requests.filter((r) => r === `watch ${PODS}`).length, 2, 'a second watch');
});

t.test('410 Gone lists again and catches up on what the watch missed', async (t) => {
  const { api, names, run, seen } = await setup(t);
  api.upsert(PODS, pod('a'));
  run();
  await until('listed', () => seen.lists === 1 && seen.watching === 1);
  api.expireHistory();
  api.dropWatches();
  api.upsertSilently(PODS, pod('b'));
  await until('relisted', () => seen.lists === 2);
  t.same(names(), ['a', 'b']);
});

t.test('a watch that stays silent past its timeout is cut and opened again', async (t) => {
  const { api, names, run, seen, failures } = await setup(t, { watchSeconds: () => 0.3, watchGraceMs: 200 });
  api.upsert(PODS, pod('a'));
  api.silentWatches = true;
  run();
  await until('listed', () => seen.lists === 1);
  api.upsert(PODS, pod('b')); // written to no watch
  await until('a second watch', () => api.requests.filter((r) => r === `watch ${PODS}`).length >= 2, 3000);
  t.match(failures[0], { code: 'KUBE_API_UNREACHABLE', message: /watch \/api\/v1\/pods: no answer in time/ }, 'the cut is reported');
  api.silentWatches = false;
  await until('b, from the history', () => names().includes('b'), 3000);
  t.equal(seen.lists, 1, 'resumed, not listed');
});

t.test('a watch line that is not JSON ends the watch; the next one resumes without losing an event', async (t) => {
  const { api, names, run, seen, failures } = await setup(t);
  run();
  await until('watching', () => seen.watching === 1);
  api.writeToWatches('{"type":"ADDED","obj');
  api.upsertSilently(PODS, pod('a'));
  await until('a', () => names().includes('a'), 3000);
  t.match(failures[0], { code: 'KUBE_API_RESPONSE', message: /an event that is not JSON/ }, 'the garbage is reported');
  t.equal(seen.lists, 1, 'resumed, not listed');
});

t.test('a watch ended at once, again and again, fails each run instead of spinning', async (t) => {
  const { api, run, failures, seen } = await setup(t);
  api.endWatchesAtOnce = true;
  run();
  await until('failed twice', () => failures.length >= 2);
  t.match(failures[0], { code: 'KUBE_API_RESPONSE', message: /ended at once with no event/ });
  t.equal(seen.lists, 1, 'and lists once');
  t.equal(seen.watching, 0, 'accepted watches that end at once do not count as the server answering (the backoff grows)');
  t.ok(api.requests.filter((r) => r === `watch ${PODS}`).length <= failures.length + 1, 'one watch per run');
});

t.test('a server that answers every watch 410 fails the run instead of listing in a loop', async (t) => {
  const { api, run, failures, seen } = await setup(t);
  api.goneAlways = true;
  run();
  await until('failed', () => failures.length >= 1);
  t.match(failures[0], { code: 'KUBE_API_STATUS', statusCode: 410, message: /410 for the version its list just returned/ });
  await until('failed again', () => failures.length >= 3);
  t.ok(seen.lists <= failures.length + 1, `one list per run at most (${seen.lists} lists, ${failures.length} failures)`);
});

t.test('errors say what was asked and what the server said', async (t) => {
  const { api, dir } = await setup(t);
  const client = new KubeApi(loadApiEndpoint(join(dir, 'kubeconfig')));
  t.teardown(() => client.close());
  api.unserved.add(PODS);
  await t.rejects(client.getJson(PODS), { code: 'KUBE_API_STATUS', statusCode: 404, message: /^GET \/api\/v1\/pods: 404/ });
  const closed = new KubeApi({ ...loadApiEndpoint(join(dir, 'kubeconfig')), server: new URL('http://127.0.0.1:1') });
  await t.rejects(closed.getJson(PODS), { code: 'KUBE_API_UNREACHABLE', message: /GET \/api\/v1\/pods: http:\/\/127\.0\.0\.1:1: connect ECONNREFUSED/ });
  const aborted = new AbortController();
  aborted.abort(new Error('closing'));
  await t.rejects(client.getJson(PODS, {}, aborted.signal), { message: 'closing' }, "the caller's abort is the caller's reason");
});

t.test('credentials: a token file is read for each request; exec plugins run through the client library', async (t) => {
  const { api, dir } = await setup(t);
  const server = JSON.parse(await import('node:fs').then((fs) => fs.readFileSync(join(dir, 'kubeconfig'), 'utf8'))) as { clusters: unknown };
  writeFileSync(join(dir, 'token'), 'first\n');
  writeFileSync(join(dir, 'file-config'), JSON.stringify({ ...server, users: [{ name: 'test', user: { tokenFile: 'token' } }], contexts: [{ name: 'test', context: { cluster: 'test', user: 'test' } }], 'current-context': 'test' }));
  const byFile = new KubeApi(loadApiEndpoint(join(dir, 'file-config')));
  t.teardown(() => byFile.close());
  await byFile.getJson(PODS);
  writeFileSync(join(dir, 'token'), 'rotated\n');
  await byFile.getJson(PODS);
  t.same(api.authorizations.slice(-2), ['Bearer first', 'Bearer rotated'], 'the rotated token is used');

  const plugin = join(dir, 'plugin.sh');
  writeFileSync(plugin, `#!/bin/sh\necho '{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","status":{"token":"from-exec"}}'\n`);
  chmodSync(plugin, 0o755);
  writeFileSync(join(dir, 'exec-config'), JSON.stringify({ ...server, users: [{ name: 'test', user: { exec: { apiVersion: 'client.authentication.k8s.io/v1', command: plugin, interactiveMode: 'Never' } } }], contexts: [{ name: 'test', context: { cluster: 'test', user: 'test' } }], 'current-context': 'test' }));
  const byExec = new KubeApi(loadApiEndpoint(join(dir, 'exec-config')));
  t.teardown(() => byExec.close());
  await byExec.getJson(PODS);
  t.equal(api.authorizations.at(-1), 'Bearer from-exec');
});
