// `npm run bench:waypoint -- [--qps 500 --conns 16 --duration 20s --payload 1024 --rounds 3]` (root):
// what a waypoint costs. HTTP/1.1 from bookinfo/productpage (node-1) in the lab, measured in turn A B A B …:
// (a) l4: straight to a reviews pod's IP (ztunnel to ztunnel, HBONE, no waypoint: the waypoint is for
// services) and (b) waypoint: to the reviews VIP, through the waypoint pod (node-2), which applies the
// HTTPRoute 90/10 and the L7 policy per request. Also the maximum rate of each and the waypoint's CPU and
// RSS at the fixed rate. Writes bench/results/DATE/waypoint.{json,md}.
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, release } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command } from 'commander';
import { runLabBench } from './lab-load.js';
import { findPod, labDown, labNetns, labUp, readLabState } from '../src/lab/lab.js';

const MANIFESTS = fileURLToPath(new URL('../../manifests/examples/waypoint/bookinfo.yaml', import.meta.url));
const LOADGEN = fileURLToPath(new URL('../src/lab/loadgen.js', import.meta.url));
const RESULTS = fileURLToPath(new URL('../../bench/results/', import.meta.url));
const TARGETS = { l4: '10.244.2.11', waypoint: '10.96.0.30' } as const;
type Mode = keyof typeof TARGETS;
const MODES = Object.keys(TARGETS) as Mode[];
const KEYS = ['achievedQps', 'errors', 'p50', 'p90', 'p99', 'p999'] as const;
type Result = Record<(typeof KEYS)[number], number>;

const log = (s: string): void => void process.stdout.write(`${s}\n`);
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;

function inPod(pod: string, args: string[], timeoutMs: number): string {
  const r = spawnSync('nsenter', [`--net=/run/netns/${findPod(pod).netns}`, process.execPath, LOADGEN, ...args], { encoding: 'utf8', timeout: timeoutMs });
  if (r.status !== 0) throw new Error(`loadgen ${args.join(' ')} in ${pod}: ${r.stderr || r.stdout}`);
  return r.stdout;
}

function load(mode: Mode, qps: number, conns: number, seconds: number): Result {
  const out = inPod('bookinfo/productpage', ['load', TARGETS[mode], '9080', String(qps), String(conns), String(seconds)], (seconds + 60) * 1000);
  return JSON.parse(out.trim().split('\n').at(-1) ?? '{}') as Result;
}

const cpuSeconds = (pid: number): number => {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? [];
  return (Number(fields[11]) + Number(fields[12])) / 100;
};
const rssMb = (pid: number): number => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? NaN) / 1024;

async function main(): Promise<void> {
  const o = new Command()
    .option('--qps <n>', 'fixed request rate', '500')
    .option('--conns <n>', 'connections', '16')
    .option('--duration <d>', 'per measurement, e.g. 20s', '20s')
    .option('--payload <bytes>', 'response size', '1024')
    .option('--rounds <n>', 'A B rounds', '3')
    .parse(process.argv)
    .opts<{ qps: string; conns: string; duration: string; payload: string; rounds: string }>();
  const [qps, conns, seconds, payload, rounds] = [Number(o.qps), Number(o.conns), Number(o.duration.replace(/s$/, '')), Number(o.payload), Number(o.rounds)];
  if (process.getuid?.() !== 0) throw new Error('needs root (network namespaces, eBPF)');
  if (labNetns().length > 0 || readLabState() !== undefined) await labDown();
  log(`lab up (${MANIFESTS})`);
  const state = await labUp(MANIFESTS);
  try {
    for (const pod of ['bookinfo/reviews-v1', 'bookinfo/reviews-v2']) {
      spawn('nsenter', [`--net=/run/netns/${findPod(pod).netns}`, process.execPath, LOADGEN, 'serve', '9080', String(payload)], { stdio: 'ignore', detached: true }).unref();
    }
    await sleep(1000);
    const waypointPid = state.waypoints?.[0]?.pid ?? NaN;
    log(`${qps} qps, ${conns} connections, ${seconds}s each, ${payload}-byte responses, ${rounds} rounds`);
    const runs: Record<Mode, Result[]> = { l4: [], waypoint: [] };
    let waypointCpu = NaN;
    let waypointRss = NaN;
    for (let r = 1; r <= rounds; r++) {
      for (const mode of MODES) {
        load(mode, qps, Math.min(conns, 8), 2); // warm-up
        const cpu0 = cpuSeconds(waypointPid);
        const t0 = Date.now();
        const res = load(mode, qps, conns, seconds);
        if (mode === 'waypoint' && r === 1) {
          waypointCpu = (cpuSeconds(waypointPid) - cpu0) / ((Date.now() - t0) / 1000);
          waypointRss = rssMb(waypointPid);
        }
        runs[mode].push(res);
        log(`round ${r}/${rounds} ${mode.padEnd(8)} ${res.achievedQps.toFixed(0)} qps, ${res.errors} errors, p50 ${res.p50.toFixed(3)} p90 ${res.p90.toFixed(3)} p99 ${res.p99.toFixed(3)} p99.9 ${res.p999.toFixed(3)} ms`);
      }
    }
    const maxRate = Object.fromEntries(MODES.map((m) => [m, load(m, 0, conns, Math.min(seconds, 10)).achievedQps])) as Record<Mode, number>;
    const summary = Object.fromEntries(MODES.map((m) => [m, Object.fromEntries(KEYS.map((k) => [k, median(runs[m].map((x) => x[k]))]))])) as Record<Mode, Result>;
    const machine = { cpus: cpus().length, cpu: cpus()[0]?.model ?? '?', kernel: release(), node: process.version };
    const date = new Date().toISOString().slice(0, 10);
    const dir = join(RESULTS, date);
    mkdirSync(dir, { recursive: true });
    const params = { qps, conns, seconds, payload, rounds };
    writeFileSync(join(dir, 'waypoint.json'), `${JSON.stringify({ date, machine, params, summary, maxRate, waypointCpu, waypointRss, runs }, null, 2)}\n`);
    const f = (v: number, d = 3): string => (Number.isFinite(v) ? v.toFixed(d) : '-');
    const md = [
      `# waypoint latency ${date}`,
      '',
      `HTTP/1.1 GET, ${payload}-byte responses, from bookinfo/productpage (node-1); ${qps} qps over ${conns} keep-alive connections, ${seconds} s per run, medians of ${rounds} rounds measured in turn. Load: src/lab/loadgen.ts (open loop, latency from the scheduled time). Machine: ${machine.cpus} × ${machine.cpu}, Linux ${machine.kernel}, Node ${machine.node}; both daemons, the waypoint, the pods and the load generator share these cores.`,
      '',
      '- **l4**: to reviews-v1\'s pod IP (node-2): captured by eBPF, HBONE between the two daemons.',
      '- **waypoint**: to the reviews VIP: HBONE to the waypoint pod (node-2), HTTPRoute 90/10 per request, L7 policy, HBONE to reviews-v1 (node-2) or reviews-v2 (node-1).',
      '',
      '| mode | achieved qps | errors | p50 ms | p90 ms | p99 ms | p99.9 ms | max qps |',
      '|---|---|---|---|---|---|---|---|',
      ...MODES.map((m) => `| ${m} | ${f(summary[m].achievedQps, 0)} | ${f(summary[m].errors, 0)} | ${f(summary[m].p50)} | ${f(summary[m].p90)} | ${f(summary[m].p99)} | ${f(summary[m].p999)} | ${f(maxRate[m], 0)} |`),
      '',
      `The waypoint adds ${f(summary.waypoint.p50 - summary.l4.p50)} ms at p50 and ${f(summary.waypoint.p99 - summary.l4.p99)} ms at p99 (ratio of p50s ${f(summary.waypoint.p50 / summary.l4.p50, 2)}); at ${qps} qps it used ${f(waypointCpu, 2)} CPU and ${f(waypointRss, 0)} MB RSS.`,
      '',
    ].join('\n');
    writeFileSync(join(dir, 'waypoint.md'), md);
    log(`\n${md}\nwritten to ${dir}`);
  } finally {
    await labDown();
  }
}

runLabBench(main);
