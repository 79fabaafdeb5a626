// `npm run bench:profile -- --scenario rps|bulk|connect [--seconds 20] [--no-strace]` (root): where a
// daemon's time goes. Builds the demo lab with `node --cpu-prof` daemons, drives one kind of load from
// shop/client (node-1) to shop/cart-remote (node-2), counts node-1's system calls with `strace -c`
// meanwhile (which slows every system call: --no-strace for a profile without it), then stops the daemons
// so that they write their profiles, and prints each daemon's top functions by self time and the
// daemon's own functions by inclusive time.
//   rps:     fortio, 1000 qps of 1 KiB HTTP/1.1 responses over 64 keep-alive connections
//   bulk:    iperf3, one stream
//   connect: the lab probe's connrate: new TCP connections 8 at a time, each with one echo
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command } from 'commander';
import { findPod, labDown, labNetns, labUp, readLabState } from '../src/lab/lab.js';
import { probeInPod, startProbeServers } from '../src/lab/probe-runner.js';

const MANIFESTS = fileURLToPath(new URL('../../manifests/examples/demo/cluster.yaml', import.meta.url));
const LOADGEN = fileURLToPath(new URL('../src/lab/loadgen.js', import.meta.url));
const GO_TOOL = fileURLToPath(new URL('../../scripts/go-tool.sh', import.meta.url));
const SERVER_IP = '10.244.2.10';
const log = (s: string): void => void process.stdout.write(`${s}\n`);
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
}

/** Inclusive time (ms) of each function whose script is one of the daemon's own (dist/src/), largest first. */
export function ownInclusiveTimes(profile: { nodes: (ProfileNode & { children?: number[] })[]; samples: number[]; timeDeltas: number[] }): { name: string; ms: number }[] {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const self = new Map<number, number>();
  profile.samples.forEach((id, i) => self.set(id, (self.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0) / 1000));
  const total = new Map<string, number>();
  const open = new Set<string>(); // names on the current stack: a recursive call is counted once
  const walk = (id: number): number => {
    const n = byId.get(id);
    if (n === undefined) return 0;
    const f = n.callFrame;
    const name = `${f.functionName || '(anonymous)'} ${basename(f.url)}:${f.lineNumber + 1}`;
    const own = f.url.includes('/dist/src/') && !open.has(name);
    if (own) open.add(name);
    let ms = self.get(id) ?? 0;
    for (const c of n.children ?? []) ms += walk(c);
    if (own) {
      open.delete(name);
      total.set(name, (total.get(name) ?? 0) + ms);
    }
    return ms;
  };
  if (profile.nodes[0] !== undefined) walk(profile.nodes[0].id);
  return [...total.entries()].map(([name, ms]) => ({ name, ms })).sort((a, b) => b.ms - a.ms);
}

/** Self time per function (ms), largest first, from a V8 .cpuprofile. */
export function selfTimes(profile: { nodes: ProfileNode[]; samples: number[]; timeDeltas: number[] }): { name: string; ms: number; share: number }[] {
  const byNode = new Map<number, number>();
  profile.samples.forEach((id, i) => byNode.set(id, (byNode.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0) / 1000));
  const byName = new Map<string, number>();
  for (const n of profile.nodes) {
    const f = n.callFrame;
    const where = f.url === '' ? '' : ` ${basename(f.url)}:${f.lineNumber + 1}`;
    const name = `${f.functionName || '(anonymous)'}${where}`;
    byName.set(name, (byName.get(name) ?? 0) + (byNode.get(n.id) ?? 0));
  }
  const total = [...byName.values()].reduce((a, b) => a + b, 0);
  return [...byName.entries()].map(([name, ms]) => ({ name, ms, share: ms / total })).sort((a, b) => b.ms - a.ms);
}

function inPod(pod: string, cmd: string, args: string[]): string {
  const r = spawnSync('nsenter', [`--net=/run/netns/${findPod(pod).netns}`, cmd, ...args], { encoding: 'utf8', timeout: 300_000 });
  if (r.status !== 0) throw new Error(`${cmd} in ${pod}: ${r.stderr || r.stdout}`);
  return r.stdout;
}

async function main(): Promise<void> {
  const o = new Command()
    .option('--scenario <s>', 'rps, bulk or connect', 'rps')
    .option('--seconds <n>', 'load duration', '20')
    .option('--no-strace', 'no strace -c meanwhile (it slows every system call the profile sees)')
    .parse(process.argv)
    .opts<{ scenario: string; seconds: string; strace: boolean }>();
  const seconds = Number(o.seconds);
  if (process.getuid?.() !== 0) throw new Error('needs root (network namespaces, eBPF)');
  const fortio = spawnSync('bash', [GO_TOOL, 'fortio'], { encoding: 'utf8' }).stdout.trim();
  if (labNetns().length > 0 || readLabState() !== undefined) await labDown();
  const profDir = mkdtempSync(join(tmpdir(), 'ztunnel-ts-prof-'));
  const state = await labUp(MANIFESTS, { nodeArgs: ['--cpu-prof', `--cpu-prof-dir=${profDir}`] });
  try {
    // Port 8080 of shop/cart-remote: an HTTP server for rps, the probe's echo for connect.
    if (o.scenario === 'connect') startProbeServers(['shop/cart-remote']);
    else spawn('nsenter', [`--net=/run/netns/${findPod('shop/cart-remote').netns}`, process.execPath, LOADGEN, 'serve', '8080', '1024'], { stdio: 'ignore', detached: true }).unref();
    spawn('nsenter', [`--net=/run/netns/${findPod('shop/cart-remote').netns}`, 'iperf3', '-s', '-p', '5201'], { stdio: 'ignore', detached: true }).unref();
    await sleep(1000);
    const node1 = state.nodes.find((n) => n.name === 'node-1')?.pid ?? 0;
    const strace = o.strace ? spawn('timeout', ['-s', 'INT', String(Math.max(5, seconds - 5)), 'strace', '-c', '-f', '-p', String(node1)], { stdio: ['ignore', 'ignore', 'pipe'] }) : undefined;
    let straceOut = '';
    strace?.stderr?.on('data', (c: Buffer) => (straceOut += String(c)));
    const started = Date.now();
    if (o.scenario === 'rps') {
      inPod('shop/client', fortio, ['load', '-qps', '1000', '-c', '64', '-uniform', '-t', `${seconds}s`, '-json', '/dev/null', `http://${SERVER_IP}:8080/`]);
    } else if (o.scenario === 'connect') {
      log(probeInPod('shop/client', 'connrate', SERVER_IP, '8080', String(seconds * 1000), '8'));
    } else {
      log(inPod('shop/client', 'iperf3', ['-c', SERVER_IP, '-p', '5201', '-t', String(seconds)]).split('\n').filter((l) => /receiver|sender/.test(l)).join('\n'));
    }
    const elapsed = (Date.now() - started) / 1000;
    if (strace !== undefined) await new Promise((r) => strace.once('exit', r));
    if (strace !== undefined) log(`\n== strace -c of node-1's daemon (first ${Math.max(5, seconds - 5)} s of ${elapsed.toFixed(0)} s of load)\n${straceOut.split('\n').filter((l) => !l.startsWith('strace:')).slice(0, 22).join('\n')}`);
  } finally {
    await labDown(); // SIGTERM: the daemons write their profiles as they exit
  }
  for (const f of readdirSync(profDir).filter((x) => x.endsWith('.cpuprofile'))) {
    const profile = JSON.parse(readFileSync(join(profDir, f), 'utf8')) as Parameters<typeof ownInclusiveTimes>[0];
    log(`\n== ${f}: top self time`);
    for (const r of selfTimes(profile).slice(0, 25)) log(`${(r.share * 100).toFixed(1).padStart(5)}%  ${r.ms.toFixed(0).padStart(7)} ms  ${r.name}`);
    log(`\n== ${f}: the daemon's own functions, inclusive time`);
    for (const r of ownInclusiveTimes(profile).slice(0, 25)) log(`${r.ms.toFixed(0).padStart(7)} ms  ${r.name}`);
  }
  log(`\nprofiles in ${profDir} (open in Chrome DevTools or speedscope)`);
}

main().catch((err: unknown) => {
  process.stderr.write(`profile failed: ${err instanceof Error ? err.message : String(err)}\n`);
  void labDown().finally(() => process.exit(1));
});
