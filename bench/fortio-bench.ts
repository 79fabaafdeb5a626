// `npm run bench -- [--qps 1000 --conns 64 --duration 30s --payload 1024 --rounds 3]` (root):
// HTTP/1.1 latency from shop/client (node-1) to shop/cart-remote (node-2) in the lab, measured in turn
// A B C A B C … as (a) no mesh, (b) ztunnel-ts, (c) the sidecar model (haproxy mTLS pair). Also the maximum
// rate, single-stream bulk throughput (iperf3; also to shop/cart-local on the client's node), new
// connections (8 at a time and 1 in flight), the busier proxy's CPU and RSS at the fixed rate, and memory
// per idle connection in the busier proxy (a daemon, or a haproxy of the pair). Writes
// bench/results/DATE/fortio.{json,md,svg}.
import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, release } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command } from 'commander';
import { findPod, labDown, labNetns, labUp, readLabState } from '../src/lab/lab.js';
import { probeInPod, startProbeServers } from '../src/lab/probe-runner.js';
import { latencyChart } from './chart.js';
import { SIDECAR_MAXCONN, startSidecars } from './sidecar.js';
import { clientReusesTimeWait } from './lab-client.js';
import { background, cpuSeconds, establishedTo, fortio, inPod, IPERF_PORT, iperfStream, log, median, rssMb, runLabBench, setMesh, sleep } from './lab-load.js';

const MANIFESTS = fileURLToPath(new URL('../../manifests/examples/demo/cluster.yaml', import.meta.url));
const LOADGEN = fileURLToPath(new URL('../src/lab/loadgen.js', import.meta.url));
const RESULTS = fileURLToPath(new URL('../../bench/results/', import.meta.url));
const SERVER_IP = '10.244.2.10';
/** shop/cart-local, on the client's node. */
const LOCAL_SERVER_IP = '10.244.1.11';
const MODES = ['no-mesh', 'ztunnel-ts', 'sidecar'] as const;
type Mode = (typeof MODES)[number];

interface LoadResult {
  tool: string;
  achievedQps: number;
  requests: number;
  errors: number;
  p50: number;
  p75: number;
  p90: number;
  p99: number;
  p999: number;
}


/** Target of the client for each mode: the pod directly, or the local sidecar port. */
function target(mode: Mode, port: number): [string, number] {
  return mode === 'sidecar' ? ['127.0.0.1', SIDECAR_PORTS[port] ?? NaN] : [SERVER_IP, port];
}

/** One load run from the client pod; the response size is the server's (set when it starts). */
function load(mode: Mode, qps: number, conns: number, seconds: number): LoadResult {
  const [host, port] = target(mode, 8080);
  const bin = fortio();
  if (bin !== undefined) {
    // -uniform: without it the connections fire in lockstep, and on 2 cores the percentiles measure that
    // burst's queueing more than the path under test.
    const args = ['load', '-qps', String(qps), '-c', String(conns), '-t', `${seconds}s`, '-json', '-', '-r', '0.00001', ...(qps > 0 ? ['-uniform'] : []), `http://${host}:${port}/`];
    const out = inPod('shop/client', bin, args, (seconds + 60) * 1000);
    const j = JSON.parse(out) as { ActualQPS: number; DurationHistogram: { Count: number; Percentiles: { Percentile: number; Value: number }[] }; RetCodes: Record<string, number> };
    const pct = (p: number): number => (j.DurationHistogram.Percentiles.find((x) => x.Percentile === p)?.Value ?? NaN) * 1000;
    return { tool: 'fortio', achievedQps: j.ActualQPS, requests: j.DurationHistogram.Count, errors: j.DurationHistogram.Count - (j.RetCodes['200'] ?? 0), p50: pct(50), p75: pct(75), p90: pct(90), p99: pct(99), p999: pct(99.9) };
  }
  const out = inPod('shop/client', process.execPath, [LOADGEN, 'load', host, String(port), String(qps), String(conns), String(seconds)], (seconds + 60) * 1000);
  return JSON.parse(out.trim().split('\n').at(-1) ?? '{}') as LoadResult;
}

interface ConnSample {
  perSecond: number;
  p50: number;
  p99: number;
}

const ECHO_PORT = 7070;


/** The client's local sidecar port for each port of the server's (haproxy forwards them, bench/sidecar.ts). */
const SIDECAR_PORTS: Record<number, number> = { 8080: 15001, 5201: 15002, [ECHO_PORT]: 15003 };

/** count new connections from the client pod, conc at a time, each with one 64-byte echo. */
function connrate(mode: Mode, count: number, conc: number): ConnSample {
  const [host, port] = target(mode, ECHO_PORT);
  const r = JSON.parse(probeInPod('shop/client', 'connrate', host, String(port), String(count), String(conc))) as ConnSample & { ok: boolean; error?: string };
  if (!r.ok) throw new Error(`connrate: ${r.error ?? 'failed'}`);
  return r;
}

/** One iperf3 stream from the client pod: to shop/cart-remote through each mode, or to shop/cart-local (same node). */
function iperf(mode: Mode, seconds: number, sameNode = false): number {
  const [host, port] = sameNode ? [LOCAL_SERVER_IP, IPERF_PORT] : target(mode, IPERF_PORT);
  return iperfStream('shop/client', sameNode ? 'shop/cart-local' : 'shop/cart-remote', host, port, seconds).gbps;
}

async function main(): Promise<void> {
  const o = new Command()
    .option('--qps <n>', 'fixed request rate', '1000')
    .option('--conns <n>', 'connections', '64')
    .option('--duration <d>', 'per measurement, e.g. 30s', '30s')
    .option('--payload <bytes>', 'response size', '1024')
    .option('--rounds <n>', 'A B C rounds', '3')
    .parse(process.argv)
    .opts<{ qps: string; conns: string; duration: string; payload: string; rounds: string }>();
  const qps = Number(o.qps);
  const conns = Number(o.conns);
  const seconds = Number(o.duration.replace(/s$/, ''));
  const payload = Number(o.payload);
  const rounds = Number(o.rounds);
  if (process.getuid?.() !== 0) throw new Error('needs root (network namespaces, eBPF)');
  for (const tool of ['haproxy', 'iperf3']) {
    if (spawnSync(tool, ['-v']).error !== undefined) throw new Error(`${tool} is not installed: apt-get install haproxy iperf3`);
  }
  if (labNetns().length > 0 || readLabState() !== undefined) await labDown();
  log(`lab up (${MANIFESTS})`);
  const state = await labUp(MANIFESTS);
  const original = readFileSync(state.manifests, 'utf8');
  background('shop/cart-remote', process.execPath, [LOADGEN, 'serve', '8080', String(payload)]);
  startProbeServers(['shop/cart-remote'], ECHO_PORT);
  clientReusesTimeWait();
  const sidecars = startSidecars(join(state.manifests, '..', 'sidecar'), join(state.manifests, '..', 'ca'), findPod('shop/client'), findPod('shop/cart-remote'), {
    forwards: [{ local: 15001, remote: 15443, app: 8080 }, { local: 15002, remote: 15444, app: 5201 }, { local: 15003, remote: 15445, app: ECHO_PORT }],
  });
  await sleep(1000);
  const bin = fortio();
  const tool = bin !== undefined ? 'fortio' : 'ztunnel-ts-loadgen';
  const toolDetail = bin !== undefined ? `fortio v${spawnSync(bin, ['version'], { encoding: 'utf8' }).stdout.trim()}, -uniform` : 'ztunnel-ts-loadgen: no fortio, because Go is missing (scripts/go-tool.sh)';
  log(`load: ${toolDetail}; ${qps} qps, ${conns} connections, ${seconds}s each, ${payload}-byte responses, ${rounds} rounds`);
  const runs: Record<Mode, LoadResult[]> = { 'no-mesh': [], 'ztunnel-ts': [], sidecar: [] };
  const daemons = state.nodes.map((n) => n.pid);
  /** The busier proxy at the fixed rate: a daemon, or a haproxy of the pair. */
  const proxyCpu: Partial<Record<Mode, number>> = {};
  const proxyRss: Partial<Record<Mode, number>> = {};
  for (let r = 1; r <= rounds; r++) {
    for (const mode of MODES) {
      await setMesh(state, mode === 'ztunnel-ts', original);
      load(mode, qps, Math.min(conns, 8), 2); // warm-up
      const proxies = mode === 'sidecar' ? sidecars : daemons;
      const cpu0 = proxies.map(cpuSeconds);
      const t0 = Date.now();
      const res = load(mode, qps, conns, seconds);
      if (mode !== 'no-mesh' && r === 1) {
        const elapsed = (Date.now() - t0) / 1000;
        proxyCpu[mode] = Math.max(...proxies.map((pid, i) => (cpuSeconds(pid) - (cpu0[i] ?? 0)) / elapsed));
        proxyRss[mode] = Math.max(...proxies.map(rssMb));
      }
      runs[mode].push(res);
      log(`round ${r}/${rounds} ${mode.padEnd(10)} ${res.achievedQps.toFixed(0)} qps, ${res.errors} errors, p50 ${res.p50.toFixed(3)} p90 ${res.p90.toFixed(3)} p99 ${res.p99.toFixed(3)} p99.9 ${res.p999.toFixed(3)} ms`);
    }
  }
  const maxRate: Record<string, number> = {};
  const bulk: Record<string, number> = {};
  const sameNode: Record<string, number> = {};
  for (const mode of MODES) {
    await setMesh(state, mode === 'ztunnel-ts', original);
    maxRate[mode] = load(mode, 0, conns, Math.min(seconds, 10)).achievedQps;
    bulk[mode] = iperf(mode, 5);
    if (mode !== 'sidecar') sameNode[mode] = iperf(mode, 5, true);
    log(`${mode.padEnd(10)} max ${maxRate[mode]?.toFixed(0)} qps, single stream ${bulk[mode]?.toFixed(2)} Gbit/s${mode === 'sidecar' ? '' : `, same node ${sameNode[mode]?.toFixed(2)} Gbit/s`}`);
  }
  // New connections (the probe's echo on ECHO_PORT) in each mode, in turn.
  const connRuns: Record<Mode, { eight: ConnSample[]; one: ConnSample[] }> = { 'no-mesh': { eight: [], one: [] }, 'ztunnel-ts': { eight: [], one: [] }, sidecar: { eight: [], one: [] } };
  for (let r = 1; r <= rounds; r++) {
    for (const mode of MODES) {
      await setMesh(state, mode === 'ztunnel-ts', original);
      connrate(mode, 200, 8); // warm-up
      const eight = connrate(mode, 2000, 8);
      const one = connrate(mode, 500, 1);
      connRuns[mode].eight.push(eight);
      connRuns[mode].one.push(one);
      log(`round ${r}/${rounds} ${mode.padEnd(10)} ${eight.perSecond.toFixed(0)} new conn/s (8 at a time, connect+echo p50 ${eight.p50.toFixed(3)} ms); 1 at a time p50 ${one.p50.toFixed(3)} ms`);
    }
  }
  const conn = Object.fromEntries(
    MODES.map((m) => [
      m,
      { perSecond: median(connRuns[m].eight.map((x) => x.perSecond)), p50: median(connRuns[m].eight.map((x) => x.p50)), p99: median(connRuns[m].eight.map((x) => x.p99)), oneP50: median(connRuns[m].one.map((x) => x.p50)) },
    ]),
  ) as Record<Mode, { perSecond: number; p50: number; p99: number; oneP50: number }>;
  // Memory per idle connection, per proxy (each daemon, and each haproxy, holds one side of every one);
  // as many for both as the pair can hold (SIDECAR_MAXCONN).
  const idleCount = Math.min(9_000, SIDECAR_MAXCONN - 100);
  const perIdleKb: Partial<Record<Mode, number>> = {};
  const idleHeld: Partial<Record<Mode, number>> = {};
  for (const mode of ['ztunnel-ts', 'sidecar'] as const) {
    await setMesh(state, mode === 'ztunnel-ts', original);
    const proxies = mode === 'sidecar' ? sidecars : daemons;
    const [host, port] = target(mode, 8080);
    const rssBefore = proxies.map(rssMb);
    const established0 = establishedTo('shop/cart-remote', 8080);
    background('shop/client', process.execPath, [LOADGEN, 'idle', host, String(port), String(idleCount), '50']);
    // Until the server has them all (each of the pair's is a TLS handshake first), then a little longer.
    const until = Date.now() + 40_000;
    while (establishedTo('shop/cart-remote', 8080) - established0 < idleCount && Date.now() < until) await sleep(1000);
    await sleep(3000);
    const held = establishedTo('shop/cart-remote', 8080) - established0;
    const rssAfter = proxies.map(rssMb);
    perIdleKb[mode] = Math.max(...proxies.map((_, i) => (((rssAfter[i] ?? NaN) - (rssBefore[i] ?? NaN)) * 1024) / held));
    idleHeld[mode] = held;
    log(`${mode.padEnd(10)} ${idleCount} idle connections (${held} reached the server): RSS ${rssBefore.map((x) => x.toFixed(0)).join('+')} → ${rssAfter.map((x) => x.toFixed(0)).join('+')} MB, ${perIdleKb[mode]?.toFixed(1)} KiB each in the busier proxy`);
    // The idle client exits after 50 s; the proxies let go of the connections after that.
    while (establishedTo('shop/cart-remote', 8080) > established0 + 10 && Date.now() < until + 60_000) await sleep(1000);
  }
  writeFileSync(state.manifests, original);

  const summary = Object.fromEntries(
    MODES.map((m) => [m, Object.fromEntries((['achievedQps', 'errors', 'p50', 'p90', 'p99', 'p999'] as const).map((k) => [k, median(runs[m].map((x) => x[k]))]))]),
  ) as Record<Mode, Record<'achievedQps' | 'errors' | 'p50' | 'p90' | 'p99' | 'p999', number>>;
  const added = (m: Mode, k: 'p50' | 'p90' | 'p99' | 'p999'): number => summary[m][k] - summary['no-mesh'][k];
  const machine = { cpus: cpus().length, cpu: cpus()[0]?.model ?? '?', kernel: release(), node: process.version };
  const date = new Date().toISOString().slice(0, 10);
  const dir = join(RESULTS, date);
  mkdirSync(dir, { recursive: true });
  const params = { qps, conns, seconds, payload, rounds, tool, toolDetail };
  const extras = { maxRateQps: maxRate, singleStreamGbps: bulk, sameNodeStreamGbps: sameNode, newConnections: conn, busierProxyCpuCoresAtQps: proxyCpu, busierProxyRssMbAtQps: proxyRss, idleConnections: idleCount, idleConnectionsHeld: idleHeld, kibPerIdleConnectionInBusierProxy: perIdleKb };
  writeFileSync(join(dir, 'fortio.json'), `${JSON.stringify({ date, machine, params, summary, extras, runs }, null, 2)}\n`);
  const f = (v: number | undefined, d = 3): string => (v === undefined || !Number.isFinite(v) ? '-' : v.toFixed(d));
  const pct = (perSecond: number): string => `${f((100 * perSecond) / conn['no-mesh'].perSecond, 0)}%`;
  const md = [
    `# Latency and cost, measured with fortio ${date}`,
    '',
    `HTTP/1.1 GET, ${payload}-byte responses, shop/client (node-1) → shop/cart-remote (node-2) in the lab; ${qps} qps over ${conns} connections, ${seconds} s per run, medians of ${rounds} rounds measured in turn. Load: ${toolDetail}. Machine: ${machine.cpus} × ${machine.cpu}, Linux ${machine.kernel}, Node ${machine.node}; daemons, proxies, pods and the load generator share these cores.`,
    '',
    '| mode | achieved qps | errors | p50 ms | p90 ms | p99 ms | p99.9 ms | added p50 | added p99 |',
    '|---|---|---|---|---|---|---|---|---|',
    ...MODES.map((m) => `| ${m} | ${f(summary[m].achievedQps, 0)} | ${f(summary[m].errors, 0)} | ${f(summary[m].p50)} | ${f(summary[m].p90)} | ${f(summary[m].p99)} | ${f(summary[m].p999)} | ${m === 'no-mesh' ? '-' : f(added(m, 'p50'))} | ${m === 'no-mesh' ? '-' : f(added(m, 'p99'))} |`),
    '',
    `ztunnel-ts adds ${f(added('ztunnel-ts', 'p99'))} ms at p99 against the sidecar model's ${f(added('sidecar', 'p99'))} ms: ratio ${f(added('ztunnel-ts', 'p99') / added('sidecar', 'p99'), 2)} (p50: ${f(added('ztunnel-ts', 'p50') / added('sidecar', 'p50'), 2)}).`,
    '',
    '| | no-mesh | ztunnel-ts | sidecar |',
    '|---|---|---|---|',
    `| max rate (qps, ${conns} connections) | ${f(maxRate['no-mesh'], 0)} | ${f(maxRate['ztunnel-ts'], 0)} | ${f(maxRate['sidecar'], 0)} |`,
    `| single stream (iperf3, Gbit/s) | ${f(bulk['no-mesh'], 2)} | ${f(bulk['ztunnel-ts'], 2)} | ${f(bulk['sidecar'], 2)} |`,
    `| single stream to a pod on the same node (iperf3, Gbit/s) | ${f(sameNode['no-mesh'], 2)} | ${f(sameNode['ztunnel-ts'], 2)} (${f((100 * (sameNode['ztunnel-ts'] ?? NaN)) / (sameNode['no-mesh'] ?? NaN), 0)}%) | not measured |`,
    `| new connections/s, 8 at a time (probe connrate) | ${f(conn['no-mesh'].perSecond, 0)} | ${f(conn['ztunnel-ts'].perSecond, 0)} (${pct(conn['ztunnel-ts'].perSecond)}) | ${f(conn['sidecar'].perSecond, 0)} (${pct(conn['sidecar'].perSecond)}) |`,
    `| connect + first echo p50, 8 at a time (ms) | ${f(conn['no-mesh'].p50)} | ${f(conn['ztunnel-ts'].p50)} (+${f(conn['ztunnel-ts'].p50 - conn['no-mesh'].p50)}) | ${f(conn['sidecar'].p50)} (+${f(conn['sidecar'].p50 - conn['no-mesh'].p50)}) |`,
    `| connect + first echo p50, 1 in flight (ms) | ${f(conn['no-mesh'].oneP50)} | ${f(conn['ztunnel-ts'].oneP50)} (+${f(conn['ztunnel-ts'].oneP50 - conn['no-mesh'].oneP50)}) | ${f(conn['sidecar'].oneP50)} (+${f(conn['sidecar'].oneP50 - conn['no-mesh'].oneP50)}) |`,
    `| RSS per idle connection, busier proxy (${idleCount} opened; held: ${idleHeld['ztunnel-ts'] ?? '-'}, ${idleHeld['sidecar'] ?? '-'}) | - | ${f(perIdleKb['ztunnel-ts'], 1)} KiB | ${f(perIdleKb['sidecar'], 1)} KiB |`,
    `| busier proxy at ${qps} qps (a daemon; a haproxy) | - | ${f(proxyCpu['ztunnel-ts'], 2)} vCPU, ${f(proxyRss['ztunnel-ts'], 0)} MB | ${f(proxyCpu['sidecar'], 2)} vCPU, ${f(proxyRss['sidecar'], 0)} MB |`,
    '',
    '',
  ].join('\n');
  writeFileSync(join(dir, 'fortio.md'), md);
  writeFileSync(
    join(dir, 'fortio.svg'),
    latencyChart(`Latency at ${qps} qps, ${conns} connections (ms)`, ['p50', 'p90', 'p99', 'p99.9'], MODES.map((m) => ({ name: m, values: [summary[m].p50, summary[m].p90, summary[m].p99, summary[m].p999] }))),
  );
  log(`\n${md}\nwritten to ${dir}`);
}

runLabBench(main);
