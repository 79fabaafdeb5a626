// A daemon with worker threads (--workers 2): both carry traffic, /metrics and config_dump are the whole
// daemon's, a worker that dies costs only its own connections and comes back, and an upgrade between two
// such daemons refuses nothing. Needs root; skipped otherwise.
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { labUpgradeNode, readLabState, type LabState } from '../../src/lab/lab.js';
import { spawnProbe, probeInPod, startProbeServers } from '../../src/lab/probe-runner.js';
import { exclusiveLab, labSkipReason, logLines, metricsIn, waitFor } from '../helpers/lab-test.js';

const MANIFESTS = fileURLToPath(new URL('../../../manifests/examples/demo/cluster.yaml', import.meta.url));
const CART_REMOTE = '10.244.2.10';

function admin(method: 'GET' | 'POST', path: string): { status: number; body: unknown } {
  const script = `fetch('http://127.0.0.1:15000${path}',{method:'${method}'}).then(async r=>process.stdout.write(JSON.stringify({status:r.status,body:await r.json()})))`;
  return JSON.parse(spawnSync('nsenter', ['--net=/run/netns/ztl-node-1', process.execPath, '-e', script], { encoding: 'utf8' }).stdout) as { status: number; body: unknown };
}

const node1Log = (state: LabState): Record<string, unknown>[] => logLines(state.nodes.find((n) => n.name === 'node-1')?.log ?? '');

/** Outbound connections node-1's workers completed since mark, by worker. */
function byWorker(state: LabState, mark: number): Record<string, number> {
  const out: Record<string, number> = {};
  for (const l of node1Log(state).slice(mark)) {
    if (l['msg'] === 'connection complete' && l['direction'] === 'outbound') out[String(l['worker'])] = (out[String(l['worker'])] ?? 0) + 1;
  }
  return out;
}

/** A daemon's warnings (failed connections among them), errors and upgrade steps since mark (a log line index). */
function troubleSince(log: string, mark: number): string[] {
  return logLines(log)
    .slice(mark)
    .filter((l) => Number(l['level']) >= 40 || /drain|taking over|handing over|ready/.test(String(l['msg'])))
    .map((l) => JSON.stringify(l));
}

function connrate(count: number): Record<string, unknown> {
  return JSON.parse(probeInPod('shop/client', 'connrate', CART_REMOTE, '8080', String(count), '4')) as Record<string, unknown>;
}

t.test('worker threads', { skip: labSkipReason ?? false }, async (t) => {
  const state = await exclusiveLab(t, MANIFESTS, { daemonArgs: ['--workers', '2'] });
  startProbeServers(['shop/cart-remote']);
  await new Promise((r) => setTimeout(r, 500));
  t.match(admin('GET', '/config_dump').body, { workers: { count: 2, listening: 2 } }, 'two workers, both listening');

  t.test('both workers carry traffic; the metrics are the whole daemon\'s', async (t) => {
    const mark = node1Log(state).length;
    t.match(connrate(200), { ok: true, count: 200 });
    await waitFor('200 access log lines', () => Object.values(byWorker(state, mark)).reduce((a, b) => a + b, 0) >= 200);
    const split = byWorker(state, mark);
    t.ok((split['0'] ?? 0) > 0 && (split['1'] ?? 0) > 0, `each worker took some of the 200 (${JSON.stringify(split)})`);
    const series = metricsIn('ztl-node-1').split('\n').filter((l) => l.startsWith('istio_tcp_connections_opened_total{reporter="source"') && l.includes('destination_workload="cart-remote"'));
    t.equal(series.length, 1, 'one series for the label set, not one per worker');
    t.ok(Number(series[0]?.split(' ').at(-1)) >= 200, `and it counts every worker's connections (${series[0]?.split(' ').at(-1) ?? '?'})`);
    t.match(metricsIn('ztl-node-1'), /^process_resident_memory_bytes \d+/m, 'process metrics once, from the daemon');
  });

  t.test('a worker that dies costs only its own connections and comes back', async (t) => {
    // Eight held connections land on both workers.
    const holds = Array.from({ length: 8 }, () => {
      const p = spawnProbe('shop/client', 'hold', CART_REMOTE, '8080', '3');
      let out = '';
      p.stdout?.on('data', (c: Buffer) => (out += String(c)));
      return { connected: () => out.includes('connected'), ended: new Promise<string>((r) => p.once('exit', () => r(String((JSON.parse(out.trim().split('\n').at(-1) ?? '{}') as { ended?: string }).ended)))) };
    });
    await waitFor('held connections', () => holds.every((h) => h.connected()));
    await new Promise((r) => setTimeout(r, 200));
    const mark = node1Log(state).length;
    t.match(admin('POST', '/workers/kill?id=0'), { status: 200, body: { killed: 0 } });
    t.match(connrate(100), { ok: true, count: 100 }, 'new connections go on at once, to the live worker');
    const ended = await Promise.all(holds.map((h) => h.ended));
    const kept = ended.filter((e) => e === 'still open').length;
    t.ok(kept > 0 && kept < 8, `the live worker's connections lasted (${kept} of 8)`);
    t.same(ended.filter((e) => e !== 'still open' && !/ECONNRESET/.test(e)), [], "the dead worker's were reset, never ended with a FIN a pod could take for a complete reply");
    await waitFor('worker 0 back', () => node1Log(state).slice(mark).some((l) => l['worker'] === 0 && l['msg'] === 'worker listening'), 10_000);
    t.match(admin('GET', '/config_dump').body, { workers: { count: 2, listening: 2 } }, 'both listening again');
    const after = node1Log(state).length;
    t.match(connrate(200), { ok: true, count: 200 });
    await waitFor('200 more', () => Object.values(byWorker(state, after)).reduce((a, b) => a + b, 0) >= 200);
    t.ok((byWorker(state, after)['0'] ?? 0) > 0, `the restarted worker carries traffic again (${JSON.stringify(byWorker(state, after))})`);
    t.equal(readLabState()?.nodes.find((n) => n.name === 'node-1')?.pid, state.nodes.find((n) => n.name === 'node-1')?.pid, 'the daemon itself never restarted');
  });

  t.test('an upgrade between daemons with workers refuses nothing', async (t) => {
    const marks = state.nodes.map((n) => logLines(n.log).length);
    const fresh = spawnProbe('shop/client', 'connrate', CART_REMOTE, '8080', '2000', '4');
    let out = '';
    fresh.stdout?.on('data', (c: Buffer) => (out += String(c)));
    const done = new Promise<void>((r) => fresh.once('exit', () => r()));
    await new Promise((r) => setTimeout(r, 200));
    const upgraded = await labUpgradeNode('node-1');
    await done;
    const result = JSON.parse(out.trim().split('\n').at(-1) ?? '{}') as Record<string, unknown>;
    t.match(result, { ok: true, count: 2000 }, `2000 new connections across the upgrade, none refused (new daemon serving after ${upgraded.readyMs} ms): ${out.trim().split('\n').at(-1) ?? ''}`);
    // What the daemons said about a failure, for the one who reads the failed run.
    if (result['ok'] !== true) state.nodes.forEach((n, i) => t.comment(`${n.name}:\n${troubleSince(n.log, marks[i] ?? 0).join('\n')}`));
    await upgraded.oldExited;
    t.match(admin('GET', '/config_dump').body, { workers: { count: 2, listening: 2 } }, "the new daemon's two workers listen");
  });
});
