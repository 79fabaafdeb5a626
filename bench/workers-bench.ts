// `npm run bench:workers -- [--rounds 3]` (root): the daemons with --workers 1 and --workers 2, in turn
// (1 2 1 2 …, both daemons restarted with the flag each time), in the demo lab: the maximum HTTP rate
// (fortio, 64 keep-alive connections, as fast as it goes) and new connections per second (fortio with
// keep-alive off: one connection per request, 8 at a time), with the daemons' CPU. On this machine's two
// cores the two daemons, both pods' servers and fortio all share them: the figures say how far a second
// event loop helps when cores are contended, not what a 16-core node would see.
// Writes bench/results/DATE/workers.{json,md}.
import { fileURLToPath } from 'node:url';
import { Command } from 'commander';
import { labDown, labNetns, labRestartNode, labUp, readLabState } from '../src/lab/lab.js';
import { alive } from '../src/lab/shell.js';
import { clientReusesTimeWait } from './lab-client.js';
import { background, cpuSeconds, fortio, fortioLoad, log, machine, median, runLabBench, sleep, writeResults } from './lab-load.js';

const MANIFESTS = fileURLToPath(new URL('../../manifests/examples/demo/cluster.yaml', import.meta.url));
const LOADGEN = fileURLToPath(new URL('../src/lab/loadgen.js', import.meta.url));
const URL_ = 'http://10.244.2.10:8080/';
const COUNTS = [1, 2] as const;

async function restartWith(workers: number): Promise<number[]> {
  const old = (readLabState()?.nodes ?? []).map((n) => n.pid);
  for (const pid of old) {
    try {
      process.kill(pid, 'SIGTERM');
    } catch {
      // gone
    }
  }
  while (old.some(alive)) await sleep(100);
  for (const n of readLabState()?.nodes ?? []) {
    const base = n.args.filter((a, i, all) => a !== '--workers' && all[i - 1] !== '--workers');
    await labRestartNode(n.name, [...base, '--workers', String(workers)]);
  }
  await sleep(500);
  return (readLabState()?.nodes ?? []).map((n) => n.pid);
}

async function main(): Promise<void> {
  const o = new Command().option('--rounds <n>', 'rounds', '3').option('--seconds <n>', 'per measurement', '10').parse(process.argv).opts<{ rounds: string; seconds: string }>();
  const rounds = Number(o.rounds);
  const seconds = Number(o.seconds);
  if (process.getuid?.() !== 0) throw new Error('needs root (network namespaces, eBPF)');
  const bin = fortio();
  if (bin === undefined) throw new Error('needs fortio (Go: scripts/go-tool.sh fortio)');
  if (labNetns().length > 0 || readLabState() !== undefined) await labDown();
  await labUp(MANIFESTS);
  background('shop/cart-remote', process.execPath, [LOADGEN, 'serve', '8080', '1024']);
  clientReusesTimeWait();
  const runs: Record<number, { maxQps: number; maxP99: number; connPerS: number; connErrors: number; cpuMsPer1kReq: number; cpuMsPerConn: number }[]> = { 1: [], 2: [] };
  for (let r = 1; r <= rounds; r++) {
    for (const workers of COUNTS) {
      const pids = await restartWith(workers);
      const cpu = (): number => pids.reduce((a, p) => a + cpuSeconds(p), 0);
      fortioLoad('shop/client', URL_, { qps: 0, conns: 8, seconds: 2 }); // warm-up
      let c0 = cpu();
      const max = fortioLoad('shop/client', URL_, { qps: 0, conns: 64, seconds });
      const cpuMax = cpu() - c0;
      c0 = cpu();
      const fresh = fortioLoad('shop/client', URL_, { qps: 0, conns: 8, seconds, keepalive: false });
      const cpuFresh = cpu() - c0;
      const row = {
        maxQps: max.achievedQps, maxP99: max.p99, connPerS: fresh.achievedQps, connErrors: fresh.errors,
        cpuMsPer1kReq: (cpuMax / (max.requests / 1000)) * 1000, cpuMsPerConn: (cpuFresh / fresh.requests) * 1000,
      };
      runs[workers]?.push(row);
      log(`round ${r}/${rounds} --workers ${workers}: max ${row.maxQps.toFixed(0)} qps (p99 ${row.maxP99.toFixed(2)} ms, ${row.cpuMsPer1kReq.toFixed(0)} ms CPU per 1k); ${row.connPerS.toFixed(0)} new conn/s (${row.connErrors} errors, ${row.cpuMsPerConn.toFixed(3)} ms CPU each)`);
    }
  }
  const summary = Object.fromEntries(COUNTS.map((w) => [w, Object.fromEntries(Object.keys(runs[w]?.[0] ?? {}).map((k) => [k, median((runs[w] ?? []).map((x) => x[k as keyof (typeof runs)[1][number]]))]))]));
  const date = new Date().toISOString().slice(0, 10);
  const m = machine();
  const json = { date, machine: m, rounds, seconds, tool: `fortio ${/fortio-(v[\d.]+)/.exec(bin)?.[1] ?? ''}`, summary, runs };
  const f = (v: number | undefined, d = 0): string => (v === undefined || !Number.isFinite(v) ? '-' : v.toFixed(d));
  const s = (w: number, k: string): number | undefined => (summary[w] as Record<string, number> | undefined)?.[k];
  const md = [
    `# Worker threads, measured with fortio ${date}`,
    '',
    `shop/client (node-1) → shop/cart-remote (node-2), HTTP/1.1 GET with 1 KiB responses, ${seconds} s per measurement, medians of ${rounds} rounds taken in turn (1 2 1 2 …; both daemons restarted with the flag each time). Machine: ${m.cpus} × ${m.cpu}, Linux ${m.kernel}, Node ${m.node}. Both daemons, both servers and fortio share these ${m.cpus} cores, so a second worker competes with the load generator and the other daemon for CPU.`,
    '',
    '| | --workers 1 | --workers 2 |',
    '|---|---|---|',
    `| max rate, 64 keep-alive connections (qps) | ${f(s(1, 'maxQps'))} | ${f(s(2, 'maxQps'))} |`,
    `| p99 at max rate (ms) | ${f(s(1, 'maxP99'), 2)} | ${f(s(2, 'maxP99'), 2)} |`,
    `| daemons' CPU per 1000 requests (ms) | ${f(s(1, 'cpuMsPer1kReq'))} | ${f(s(2, 'cpuMsPer1kReq'))} |`,
    `| new connections/s (keep-alive off, 8 at a time) | ${f(s(1, 'connPerS'))} | ${f(s(2, 'connPerS'))} |`,
    `| errors among them | ${f(s(1, 'connErrors'))} | ${f(s(2, 'connErrors'))} |`,
    `| daemons' CPU per new connection (ms) | ${f(s(1, 'cpuMsPerConn'), 3)} | ${f(s(2, 'cpuMsPerConn'), 3)} |`,
    '',
  ].join('\n');
  writeResults('workers', date, json, md);
}

runLabBench(main);
