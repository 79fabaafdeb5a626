// What the lab benchmarks share: fortio (pinned, built from its Go module), commands in pods, process CPU.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { cpus, release } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { findPod, labDown, type LabState } from '../src/lab/lab.js';

export const log = (s: string): void => void process.stdout.write(`${s}\n`);
export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
export const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;

/** The demo's namespaces in the mesh (ambient) or out of it, by rewriting the lab's manifests; then a moment for the daemons to see it. */
export async function setMesh(state: LabState, on: boolean, original: string): Promise<void> {
  writeFileSync(state.manifests, on ? original : original.replace('istio.io/dataplane-mode: ambient', 'istio.io/dataplane-mode: none'));
  await sleep(1500);
}

/** A command in a pod's network namespace; throws with its output when it fails. */
export function inPod(pod: string, cmd: string, args: string[], timeoutMs: number): string {
  const r = spawnSync('nsenter', [`--net=/run/netns/${findPod(pod).netns}`, cmd, ...args], { encoding: 'utf8', timeout: timeoutMs });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} in ${pod}: ${r.stderr || r.stdout}`);
  return r.stdout;
}

/** The port a one-off iperf3 server listens on in the server pod. */
export const IPERF_PORT = 5201;

/** One iperf3 stream of seconds from clientPod to host:port (a proxy's, or the server pod's IPERF_PORT), served by a one-off iperf3 in serverPod. */
export function iperfStream(clientPod: string, serverPod: string, host: string, port: number, seconds: number): { gbps: number; bytes: number } {
  background(serverPod, 'iperf3', ['-s', '-1', '-p', String(IPERF_PORT)]);
  spawnSync('sleep', ['0.5']);
  const out = inPod(clientPod, 'iperf3', ['-c', host, '-p', String(port), '-t', String(seconds), '-J'], (seconds + 30) * 1000);
  const r = (JSON.parse(out) as { end: { sum_received: { bits_per_second: number; bytes: number } } }).end.sum_received;
  return { gbps: r.bits_per_second / 1e9, bytes: r.bytes };
}

/** A long-running command in a pod, to wait for. */
export function runInPod(pod: string, cmd: string, args: string[]): ChildProcess {
  return spawn('nsenter', [`--net=/run/netns/${findPod(pod).netns}`, cmd, ...args], { stdio: 'ignore' });
}

export function background(pod: string, cmd: string, args: string[]): void {
  spawn('nsenter', [`--net=/run/netns/${findPod(pod).netns}`, cmd, ...args], { stdio: 'ignore', detached: true }).unref();
}

/** Established TCP connections to port in a pod (its server's side of them). */
export function establishedTo(pod: string, port: number): number {
  return inPod(pod, 'ss', ['-Htn', 'state', 'established', `( sport = :${port} )`], 10_000).split('\n').filter((l) => l.trim() !== '').length;
}

/** A process's resident memory (VmRSS), in MiB. */
export function rssMb(pid: number): number {
  return Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? NaN) / 1024;
}

/** How many descriptors a process has open. */
export function openFds(pid: number): number {
  return readdirSync(`/proc/${pid}/fd`).length;
}

/** utime + stime of a process (all its threads), in seconds. */
export function cpuSeconds(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? [];
  return (Number(fields[11]) + Number(fields[12])) / 100; // clock ticks of 1/100 s
}

const GO_TOOL = fileURLToPath(new URL('../../scripts/go-tool.sh', import.meta.url));

/** fortio from PATH, or built once from its pinned Go module (scripts/go-tool.sh); undefined without Go. */
let fortioPath: string | undefined | null = null;
export function fortio(): string | undefined {
  if (fortioPath !== null) return fortioPath;
  if (spawnSync('fortio', ['version']).status === 0) return (fortioPath = 'fortio');
  const built = spawnSync('bash', [GO_TOOL, 'fortio'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
  fortioPath = built.status === 0 ? built.stdout.trim() : undefined;
  return fortioPath;
}

export interface FortioResult {
  readonly achievedQps: number;
  readonly requests: number;
  /** Requests that did not get a 200 (socket errors included). */
  readonly errors: number;
  readonly p50: number;
  readonly p99: number;
}

/** fortio HTTP load from a pod; qps 0 is as fast as it goes; keepalive false opens a connection per request. */
export function fortioLoad(pod: string, url: string, o: { qps: number; conns: number; seconds: number; keepalive?: boolean }): FortioResult {
  const bin = fortio();
  if (bin === undefined) throw new Error('fortio is not available: it needs Go (scripts/go-tool.sh fortio)');
  const args = ['load', '-qps', String(o.qps), '-c', String(o.conns), '-t', `${o.seconds}s`, '-json', '-', '-r', '0.00001', ...(o.qps > 0 ? ['-uniform'] : []), ...(o.keepalive === false ? ['-keepalive=false'] : []), url];
  const j = JSON.parse(inPod(pod, bin, args, (o.seconds + 60) * 1000)) as { ActualQPS: number; DurationHistogram: { Count: number; Percentiles: { Percentile: number; Value: number }[] }; RetCodes: Record<string, number> };
  const pct = (p: number): number => (j.DurationHistogram.Percentiles.find((x) => x.Percentile === p)?.Value ?? NaN) * 1000;
  return { achievedQps: j.ActualQPS, requests: j.DurationHistogram.Count, errors: j.DurationHistogram.Count - (j.RetCodes['200'] ?? 0), p50: pct(50), p99: pct(99) };
}

/** Runs a lab benchmark: the lab comes down after it, also when it fails (then exit 1). */
export function runLabBench(main: () => Promise<void>): void {
  main()
    .catch((err: unknown) => {
      process.stderr.write(`bench failed: ${err instanceof Error ? err.message : String(err)}\n`);
      process.exitCode = 1;
    })
    .finally(() => void labDown());
}

const RESULTS = fileURLToPath(new URL('../../bench/results/', import.meta.url));

/** This machine, as every result file names it. */
export function machine(): { cpus: number; cpu: string; kernel: string; node: string } {
  return { cpus: cpus().length, cpu: cpus()[0]?.model ?? '?', kernel: release(), node: process.version };
}

/** Writes bench/results/DATE/NAME.json and NAME.md, and prints the markdown. */
export function writeResults(name: string, date: string, json: unknown, md: string): void {
  const dir = join(RESULTS, date);
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, `${name}.json`), `${JSON.stringify(json, null, 2)}\n`);
  writeFileSync(join(dir, `${name}.md`), md);
  log(`\n${md}\nwritten to ${dir}`);
}
