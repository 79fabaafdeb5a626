// `npm run bench:floor -- [--rounds 3 --duration 20]` (root): how much of what ztunnel-ts costs per request
// and per byte is Node's, in the lab, in one run. The same path from shop/client (node-1) to
// shop/cart-remote (node-2), measured in turn A B C D E … as
//   no-mesh      direct
//   ztunnel-ts   eBPF capture and the two node daemons (HBONE)
//   haproxy      the sidecar model: a haproxy mutual TLS pair in the two pods (bench/sidecar.ts)
//   node-tls     the same pair's job done by Node, mutual TLS over TCP (bench/node-pair.ts)
//   node-hbone   a Node pair speaking the daemons' HBONE: one HTTP/2 session over mutual TLS, CONNECT
// The Node pairs move bytes with the daemons' own copy and node flags and do nothing else. Per mode:
// fortio at a fixed rate over 64 connections (-uniform), its added p50 and p99 and both proxies' CPU per
// 1000 requests; the highest rate over 64 connections; one iperf3 stream and both proxies' CPU per GiB.
// Writes bench/results/DATE/runtime-floor.{json,md}.
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command } from 'commander';
import { findPod, labDown, labNetns, labUp, readLabState } from '../src/lab/lab.js';
import { background, cpuSeconds, fortio, fortioLoad, IPERF_PORT, iperfStream, log, machine, median, runLabBench, setMesh, sleep, writeResults } from './lab-load.js';
import { startNodePair } from './node-pair.js';
import { startSidecars, type SidecarPorts } from './sidecar.js';

const MANIFESTS = fileURLToPath(new URL('../../manifests/examples/demo/cluster.yaml', import.meta.url));
const LOADGEN = fileURLToPath(new URL('../src/lab/loadgen.js', import.meta.url));
const SERVER_IP = '10.244.2.10';
const MODES = ['no-mesh', 'ztunnel-ts', 'haproxy', 'node-tls', 'node-hbone'] as const;
type Mode = (typeof MODES)[number];
type Pair = Exclude<Mode, 'no-mesh' | 'ztunnel-ts'>;
const APP_PORTS = { http: 8080, iperf: IPERF_PORT } as const;

/** The client pod's local port of each pair for each app port, and the server pod's port it crosses to. */
const PAIR_PORTS: Record<Pair, SidecarPorts> = {
  haproxy: { forwards: [{ local: 15001, remote: 15443, app: APP_PORTS.http }, { local: 15002, remote: 15444, app: APP_PORTS.iperf }] },
  'node-tls': { forwards: [{ local: 15011, remote: 15453, app: APP_PORTS.http }, { local: 15012, remote: 15454, app: APP_PORTS.iperf }] },
  'node-hbone': { forwards: [{ local: 15021, remote: 15463, app: APP_PORTS.http }, { local: 15022, remote: 15464, app: APP_PORTS.iperf }] },
};

function target(mode: Mode, app: number): [string, number] {
  if (mode === 'no-mesh' || mode === 'ztunnel-ts') return [SERVER_IP, app];
  return ['127.0.0.1', PAIR_PORTS[mode].forwards.find((f) => f.app === app)?.local ?? NaN];
}

interface Sample {
  /** Requests at the fixed rate that did not get a 200. */
  errors: number;
  p50: number;
  p99: number;
  cpuMsPer1000: number;
  maxQps: number;
  gbps: number;
  cpuSecondsPerGiB: number;
}

const cpuOf = (pids: number[]): number => pids.reduce((sum, pid) => sum + cpuSeconds(pid), 0);

function measure(mode: Mode, pids: number[], qps: number, seconds: number): Sample {
  const [host, port] = target(mode, APP_PORTS.http);
  const url = `http://${host}:${port}/`;
  fortioLoad('shop/client', url, { qps, conns: 8, seconds: 2 }); // warm-up
  let c0 = cpuOf(pids);
  const fixed = fortioLoad('shop/client', url, { qps, conns: 64, seconds });
  const cpuMsPer1000 = pids.length === 0 ? 0 : ((cpuOf(pids) - c0) * 1e6) / fixed.requests;
  const max = fortioLoad('shop/client', url, { qps: 0, conns: 64, seconds: 8 });
  const [ihost, iport] = target(mode, APP_PORTS.iperf);
  c0 = cpuOf(pids);
  const stream = iperfStream('shop/client', 'shop/cart-remote', ihost, iport, 5);
  const gib = stream.bytes / 2 ** 30;
  return {
    errors: fixed.errors,
    p50: fixed.p50,
    p99: fixed.p99,
    cpuMsPer1000,
    maxQps: max.achievedQps,
    gbps: stream.gbps,
    cpuSecondsPerGiB: pids.length === 0 ? 0 : (cpuOf(pids) - c0) / gib,
  };
}

async function main(): Promise<void> {
  const o = new Command()
    .option('--qps <n>', 'fixed request rate', '1000')
    .option('--duration <s>', 'seconds at the fixed rate, per round', '20')
    .option('--payload <bytes>', 'response size', '1024')
    .option('--rounds <n>', 'rounds of all modes in turn', '3')
    .parse(process.argv)
    .opts<{ qps: string; duration: string; payload: string; rounds: string }>();
  const [qps, seconds, rounds] = [Number(o.qps), Number(o.duration), Number(o.rounds)];
  if (process.getuid?.() !== 0) throw new Error('needs root (network namespaces, eBPF)');
  for (const tool of ['haproxy', 'iperf3']) {
    if (spawnSync(tool, ['-v']).error !== undefined) throw new Error(`${tool} is not installed: apt-get install haproxy iperf3`);
  }
  const bin = fortio();
  if (bin === undefined) throw new Error('fortio is not available: it needs Go (scripts/go-tool.sh fortio)');
  if (labNetns().length > 0 || readLabState() !== undefined) await labDown();
  log(`lab up (${MANIFESTS})`);
  const state = await labUp(MANIFESTS);
  const original = readFileSync(state.manifests, 'utf8');
  background('shop/cart-remote', process.execPath, [LOADGEN, 'serve', String(APP_PORTS.http), o.payload]);
  const [client, server] = [findPod('shop/client'), findPod('shop/cart-remote')];
  const labDir = join(state.manifests, '..');
  const pids: Record<Mode, number[]> = {
    'no-mesh': [],
    'ztunnel-ts': state.nodes.map((n) => n.pid),
    haproxy: startSidecars(join(labDir, 'sidecar'), join(labDir, 'ca'), client, server, PAIR_PORTS.haproxy),
    'node-tls': startNodePair('tls', join(labDir, 'node-tls'), join(labDir, 'ca'), client, server, PAIR_PORTS['node-tls']),
    'node-hbone': startNodePair('hbone', join(labDir, 'node-hbone'), join(labDir, 'ca'), client, server, PAIR_PORTS['node-hbone']),
  };
  await sleep(1500);
  const toolDetail = `fortio v${spawnSync(bin, ['version'], { encoding: 'utf8' }).stdout.trim()}, -uniform; iperf3`;
  log(`${toolDetail}; ${qps} qps over 64 connections for ${seconds} s, ${o.payload}-byte responses, ${rounds} rounds`);
  const runs = Object.fromEntries(MODES.map((m) => [m, [] as Sample[]])) as Record<Mode, Sample[]>;
  for (let r = 1; r <= rounds; r++) {
    for (const mode of MODES) {
      await setMesh(state, mode === 'ztunnel-ts', original);
      const s = measure(mode, pids[mode], qps, seconds);
      runs[mode].push(s);
      log(`round ${r}/${rounds} ${mode.padEnd(10)} ${s.errors} errors, p50 ${s.p50.toFixed(3)} p99 ${s.p99.toFixed(3)} ms, ${s.cpuMsPer1000.toFixed(0)} ms CPU/1000 req; max ${s.maxQps.toFixed(0)} qps; one stream ${s.gbps.toFixed(2)} Gbit/s, ${s.cpuSecondsPerGiB.toFixed(2)} CPU s/GiB`);
    }
  }
  writeFileSync(state.manifests, original);
  const keys = ['errors', 'p50', 'p99', 'cpuMsPer1000', 'maxQps', 'gbps', 'cpuSecondsPerGiB'] as const;
  const summary = Object.fromEntries(MODES.map((m) => [m, Object.fromEntries(keys.map((k) => [k, median(runs[m].map((s) => s[k]))]))])) as unknown as Record<Mode, Sample>;
  const f = (v: number, d = 3): string => (Number.isFinite(v) ? v.toFixed(d) : '-');
  const direct = summary['no-mesh'];
  const row = (m: Mode): string => {
    const s = summary[m];
    const proxied = m !== 'no-mesh';
    return `| ${m} | ${f(s.errors, 0)} | ${f(s.p50)} | ${f(s.p99)} | ${proxied ? f(s.p50 - direct.p50) : '-'} | ${proxied ? f(s.p99 - direct.p99) : '-'} | ${proxied ? f(s.cpuMsPer1000, 0) : '-'} | ${f(s.maxQps, 0)} | ${f(s.gbps, 2)} | ${proxied ? f(s.cpuSecondsPerGiB, 2) : '-'} |`;
  };
  const date = new Date().toISOString().slice(0, 10);
  const m = machine();
  const md = [
    `# What of ztunnel-ts's cost is Node's: the sidecar pair's job done in Node, ${date}`,
    '',
    `\`npm run bench:floor -- --rounds ${rounds} --duration ${seconds}\`: shop/client (node-1) → shop/cart-remote (node-2) in the lab, the modes measured in turn, medians of ${rounds} rounds. ${toolDetail}. HTTP/1.1 GETs, ${o.payload}-byte responses, ${qps} qps over 64 connections for ${seconds} s; the highest rate over 64 connections for 8 s; one iperf3 stream for 5 s. CPU is both proxies' (the two daemons, or the pair's two processes). Machine: ${m.cpus} × ${m.cpu}, Linux ${m.kernel}, Node ${m.node}; proxies, pods and load share these cores.`,
    '',
    '| mode | errors | p50 ms | p99 ms | added p50 | added p99 | CPU ms / 1000 req | max qps | one stream Gbit/s | CPU s / GiB |',
    '|---|---|---|---|---|---|---|---|---|---|',
    ...MODES.map(row),
    '',
    'node-tls is haproxy\'s job in Node; node-hbone the daemons\' protocol in Node with nothing else of theirs; ztunnel-ts above node-hbone is the daemon\'s own work (capture, policy, telemetry, logs).',
    '',
  ].join('\n');
  writeResults('runtime-floor', date, { date, machine: m, params: { qps, seconds, payload: Number(o.payload), rounds, tool: 'fortio', toolDetail }, summary, runs }, md);
}

runLabBench(main);
