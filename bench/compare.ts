// `npm run bench:compare -- --before REV [--rounds 5]` (root): one change, measured in one run. Builds REV
// in a temporary git worktree, brings up the demo lab once, and in every round restarts both daemons from
// one build, measures, then from the other, measures (A B, B A, A B …), so drift and order hit both.
// Per build: new connections (8 at a time, one echo each), the daemons' CPU per connection and the busier
// daemon's RSS after them; connect and first echo with one connection in flight (first); fortio at 1000
// qps over 64 connections (-uniform), CPU per 1000 requests and the busier daemon's RSS as it ends; the
// highest rate fortio reaches over 64 connections (max) and CPU per 1000 requests there; one iperf3 stream
// and CPU per GiB, to the other node and to a pod on the same node; 9,000 idle tunnelled connections and
// the busier daemon's RSS per connection the server holds; last (settled), the busier daemon's RSS after 25 s
// idle, what the round left resident. --figures picks some.
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command } from 'commander';
import * as current from '../src/lab/lab.js';
import { probeInPod, startProbeServers } from '../src/lab/probe-runner.js';
import { clientReusesTimeWait } from './lab-client.js';
import { establishedTo, rssMb } from './lab-load.js';

type Lab = typeof current;
const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const MANIFESTS = join(ROOT, 'manifests/examples/demo/cluster.yaml');
const LOADGEN = fileURLToPath(new URL('../src/lab/loadgen.js', import.meta.url));
const SERVER = '10.244.2.10';
/** shop/cart-local, on the client's node: same-node flows. */
const LOCAL_SERVER = '10.244.1.11';
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;
const cpuSeconds = (pid: number): number => {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? [];
  return (Number(f[11]) + Number(f[12])) / 100;
};

function run(cmd: string, args: string[], cwd?: string): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8', ...(cwd === undefined ? {} : { cwd }), timeout: 600_000 });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${r.stderr || r.stdout}`);
  return r.stdout;
}

/** REV checked out and built beside this checkout (sharing its node_modules). */
function buildRevision(rev: string): { dir: string; remove: () => void } {
  const dir = join(mkdtempSync(join(tmpdir(), 'ztunnel-ts-before-')), 'tree');
  run('git', ['worktree', 'add', '--detach', dir, rev], ROOT);
  symlinkSync(join(ROOT, 'node_modules'), join(dir, 'node_modules'));
  run(process.execPath, [join(ROOT, 'node_modules/typescript/bin/tsc'), '-p', 'tsconfig.json'], dir);
  return { dir, remove: () => void spawnSync('git', ['worktree', 'remove', '--force', dir], { cwd: ROOT }) };
}

/** The lab's daemons and how to reach the client pod, for one measurement. */
interface Probe {
  readonly pids: number[];
  readonly cpu: () => number;
  readonly inClient: (cmd: string, args: string[]) => string;
  readonly clientNetns: string;
}

/** New connections, 8 at a time, one echo each; the daemons' CPU per connection. */
function connections(p: Probe): Record<string, number> {
  probeInPod('shop/client', 'connrate', SERVER, '7070', '300', '8');
  const c0 = p.cpu();
  const c = JSON.parse(probeInPod('shop/client', 'connrate', SERVER, '7070', '3000', '8')) as { perSecond: number; p50: number; p99: number };
  // Freshly started daemons after 3300 new connections: V8's young generation grows during a burst and
  // shrinks only at a collection under low allocation, so an idle daemon keeps what the burst made.
  const rssAfterBurstMb = Math.max(...p.pids.map(rssMb));
  return { connPerS: c.perSecond, connP50ms: c.p50, cpuMsPerConn: ((p.cpu() - c0) / 3000) * 1000, rssAfterBurstMb };
}

/** Connect and first echo with one connection in flight: the path's latency, with no queueing. */
function firstEcho(): Record<string, number> {
  probeInPod('shop/client', 'connrate', SERVER, '7070', '50', '1');
  const c = JSON.parse(probeInPod('shop/client', 'connrate', SERVER, '7070', '500', '1')) as { perSecond: number; p50: number; p99: number };
  return { firstP50ms: c.p50, firstP99ms: c.p99 };
}

/** fortio at 1000 qps over 64 connections (-uniform); the daemons' CPU per 1000 requests. */
function latency(p: Probe, fortio: string): Record<string, number> {
  p.inClient(fortio, ['load', '-qps', '1000', '-c', '8', '-t', '2s', `http://${SERVER}:8080/`]);
  const c0 = p.cpu();
  const j = JSON.parse(p.inClient(fortio, ['load', '-qps', '1000', '-c', '64', '-uniform', '-t', '10s', '-json', '-', '-r', '0.00001', `http://${SERVER}:8080/`])) as {
    DurationHistogram: { Count: number; Percentiles: { Percentile: number; Value: number }[] };
  };
  const pct = (q: number): number => (j.DurationHistogram.Percentiles.find((x) => x.Percentile === q)?.Value ?? NaN) * 1000;
  return { p50ms: pct(50), p99ms: pct(99), cpuMsPer1kReq: ((p.cpu() - c0) / (j.DurationHistogram.Count / 1000)) * 1000, rssAtQpsMb: Math.max(...p.pids.map(rssMb)) };
}

/** fortio as fast as it can over 64 connections for 10 s (the bench's max rate); the daemons' CPU per 1000 requests. */
function maxRate(p: Probe, fortio: string): Record<string, number> {
  const c0 = p.cpu();
  const j = JSON.parse(p.inClient(fortio, ['load', '-qps', '0', '-c', '64', '-t', '10s', '-json', '-', `http://${SERVER}:8080/`])) as { ActualQPS: number; DurationHistogram: { Count: number } };
  return { maxQps: j.ActualQPS, cpuMsPer1kReqAtMax: ((p.cpu() - c0) / (j.DurationHistogram.Count / 1000)) * 1000 };
}

/** One iperf3 stream to server; the daemons' CPU per GiB. */
function stream(p: Probe, server: string): { gbps: number; cpuSPerGiB: number } {
  const c0 = p.cpu();
  const b = (JSON.parse(p.inClient('iperf3', ['-c', server, '-p', '5201', '-t', '5', '-J'])) as { end: { sum_received: { bits_per_second: number; bytes: number } } }).end.sum_received;
  return { gbps: b.bits_per_second / 1e9, cpuSPerGiB: (p.cpu() - c0) / (b.bytes / 2 ** 30) };
}

function bulk(p: Probe): Record<string, number> {
  return stream(p, SERVER);
}

/** One iperf3 stream to a pod on the client's own node. */
function localBulk(p: Probe): Record<string, number> {
  const s = stream(p, LOCAL_SERVER);
  return { localGbps: s.gbps, localCpuSPerGiB: s.cpuSPerGiB };
}

/** As npm run bench measures it: RSS before, 9,000 idle connections, RSS once the server holds them (busier daemon). */
async function idle(p: Probe): Promise<Record<string, number>> {
  const count = 9_000;
  const rssBefore = p.pids.map(rssMb);
  const held0 = establishedTo('shop/cart-remote', 8080);
  spawn('nsenter', [`--net=/run/netns/${p.clientNetns}`, process.execPath, LOADGEN, 'idle', SERVER, '8080', String(count), '40'], { stdio: 'ignore', detached: true }).unref();
  const until = Date.now() + 30_000;
  while (establishedTo('shop/cart-remote', 8080) - held0 < count && Date.now() < until) await new Promise((r) => setTimeout(r, 1000));
  await new Promise((r) => setTimeout(r, 3000));
  const held = establishedTo('shop/cart-remote', 8080) - held0;
  const rssAfter = p.pids.map(rssMb);
  const kib = Math.max(...p.pids.map((_, i) => (((rssAfter[i] ?? NaN) - (rssBefore[i] ?? NaN)) * 1024) / held));
  while (establishedTo('shop/cart-remote', 8080) > held0 + 10 && Date.now() < until + 60_000) await new Promise((r) => setTimeout(r, 1000));
  return { idleKiBPerConn: kib, idleHeld: held };
}

/** The busier daemon's RSS once it has been idle for 25 s after the round's other figures (what a burst leaves). */
async function settled(p: Probe): Promise<Record<string, number>> {
  await new Promise((r) => setTimeout(r, 25_000));
  return { rssSettledMb: Math.max(...p.pids.map(rssMb)) };
}

/** Restarts both daemons from lab's build, then takes the chosen figures. */
async function measure(lab: Lab, fortio: string, figures: ReadonlySet<string>): Promise<Record<string, number>> {
  for (const n of lab.readLabState()?.nodes ?? []) {
    try {
      process.kill(n.pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  await new Promise((r) => setTimeout(r, 300));
  for (const n of lab.readLabState()?.nodes ?? []) await lab.labRestartNode(n.name);
  await new Promise((r) => setTimeout(r, 500));
  const pids = (lab.readLabState()?.nodes ?? []).map((n) => n.pid);
  const clientNetns = lab.findPod('shop/client').netns;
  const p: Probe = {
    pids,
    clientNetns,
    cpu: () => pids.reduce((a, pid) => a + cpuSeconds(pid), 0),
    inClient: (cmd, args) => run('nsenter', [`--net=/run/netns/${clientNetns}`, cmd, ...args]),
  };
  return {
    ...(figures.has('conn') ? connections(p) : {}),
    ...(figures.has('first') ? firstEcho() : {}),
    ...(figures.has('latency') ? latency(p, fortio) : {}),
    ...(figures.has('max') ? maxRate(p, fortio) : {}),
    ...(figures.has('bulk') ? bulk(p) : {}),
    ...(figures.has('local') ? localBulk(p) : {}),
    ...(figures.has('idle') ? await idle(p) : {}),
    ...(figures.has('settled') ? await settled(p) : {}),
  };
}

async function main(): Promise<void> {
  const o = new Command()
    .requiredOption('--before <rev>', 'git revision to compare against')
    .option('--rounds <n>', 'A B rounds', '5')
    .option('--figures <list>', 'which figures: conn, first (connect and first echo, 1 in flight), latency, max (the highest rate over 64 connections), bulk, local (a stream to a pod on the same node), idle, settled (RSS after 25 s idle, last)', 'conn,latency,bulk,local,idle')
    .parse(process.argv)
    .opts<{ before: string; rounds: string; figures: string }>();
  const figures = new Set(o.figures.split(','));
  if (process.getuid?.() !== 0) throw new Error('needs root (network namespaces, eBPF)');
  const fortio = run('bash', [join(ROOT, 'scripts/go-tool.sh'), 'fortio']).trim();
  const before = buildRevision(o.before);
  try {
    const old = (await import(join(before.dir, 'dist/src/lab/lab.js'))) as Lab;
    await current.labDown();
    await current.labUp(MANIFESTS);
    const ns = `--net=/run/netns/${current.findPod('shop/cart-remote').netns}`;
    startProbeServers(['shop/cart-remote'], 7070);
    clientReusesTimeWait();
    spawn('nsenter', [ns, 'iperf3', '-s', '-p', '5201'], { stdio: 'ignore', detached: true }).unref();
    spawn('nsenter', [`--net=/run/netns/${current.findPod('shop/cart-local').netns}`, 'iperf3', '-s', '-p', '5201'], { stdio: 'ignore', detached: true }).unref();
    spawn('nsenter', [ns, process.execPath, LOADGEN, 'serve', '8080', '1024'], { stdio: 'ignore', detached: true }).unref();
    const results: Record<'before' | 'after', Record<string, number>[]> = { before: [], after: [] };
    for (let r = 1; r <= Number(o.rounds); r++) {
      // A B, then B A: an A/A run (the same build on both sides) measured the second of each pair with a
      // 26% higher p99 at 1000 qps, so the order alternates and the position cancels out.
      const pair = [['before', old], ['after', current]] as const;
      for (const [name, lab] of r % 2 === 1 ? pair : ([pair[1], pair[0]] as const)) {
        const m = await measure(lab, fortio, figures);
        results[name].push(m);
        process.stdout.write(`round ${r} ${name.padEnd(6)} ${Object.entries(m).map(([k, v]) => `${k}=${v.toFixed(3)}`).join(' ')}\n`);
      }
    }
    process.stdout.write(`\nmedians of ${o.rounds} rounds, ${o.before} (before) vs this checkout (after):\n`);
    for (const k of Object.keys(results.before[0] ?? {})) {
      const a = median(results.before.map((x) => x[k] ?? NaN));
      const b = median(results.after.map((x) => x[k] ?? NaN));
      process.stdout.write(`  ${k.padEnd(14)} ${a.toFixed(3).padStart(10)} -> ${b.toFixed(3).padStart(10)}  (${(((b - a) / a) * 100).toFixed(1)}%)\n`);
    }
  } finally {
    await current.labDown();
    before.remove();
    rmSync(join(before.dir, '..'), { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`compare failed: ${err instanceof Error ? err.message : String(err)}\n`);
  void current.labDown().finally(() => process.exit(1));
});
