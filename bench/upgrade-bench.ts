// `npm run bench:upgrade` (root): both daemons of the demo lab upgraded in place (lab upgrade) under a
// steady 500 new connections/s (fortio, keep-alive off: one connection per request) and 20 long-lived
// transfers (the probe, 6 MiB each at 1 MiB/s, checked byte for byte): how many new connections were
// refused or reset, whether the long ones survived, and how soon each new daemon served.
// Writes bench/results/DATE/upgrade.{json,md}.
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { findPod, labDown, labNetns, labUp, readLabState } from '../src/lab/lab.js';
import { PROBE, startProbeServers } from '../src/lab/probe-runner.js';
import { clientReusesTimeWait } from './lab-client.js';
import { background, fortio, fortioLoad, machine, runLabBench, sleep, writeResults } from './lab-load.js';

const MANIFESTS = fileURLToPath(new URL('../../manifests/examples/demo/cluster.yaml', import.meta.url));
const LOADGEN = fileURLToPath(new URL('../src/lab/loadgen.js', import.meta.url));
const SERVER = '10.244.2.10';
const SECONDS = 14;
const TRANSFERS = 20;
// 6 s each at 1 MiB/s: started with the load, they end before the first old daemon's drain deadline (5 s
// after its upgrade at 3 s), so each must arrive intact.
const BYTES = 6 * 1024 * 1024;

/** A paced echo transfer from the client pod; resolves with the probe's verdict. */
function transfer(): Promise<{ ok: boolean; received?: number; error?: string }> {
  return new Promise((resolve) => {
    const p = spawn('nsenter', [`--net=/run/netns/${findPod('shop/client').netns}`, process.execPath, PROBE, 'send', SERVER, '7070', String(BYTES), String(1024 * 1024)], { stdio: ['ignore', 'pipe', 'ignore'] });
    let out = '';
    p.stdout.on('data', (c: Buffer) => (out += String(c)));
    p.once('exit', () => {
      try {
        resolve(JSON.parse(out.trim().split('\n').at(-1) ?? '') as { ok: boolean });
      } catch {
        resolve({ ok: false, error: `probe printed ${JSON.stringify(out)}` });
      }
    });
  });
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('needs root (network namespaces, eBPF)');
  const bin = fortio();
  if (bin === undefined) throw new Error('needs fortio (Go: scripts/go-tool.sh fortio)');
  if (labNetns().length > 0 || readLabState() !== undefined) await labDown();
  await labUp(MANIFESTS);
  background('shop/cart-remote', process.execPath, [LOADGEN, 'serve', '8080', '1024']);
  startProbeServers(['shop/cart-remote'], 7070);
  clientReusesTimeWait();
  await sleep(1000);
  const transfers = Array.from({ length: TRANSFERS }, () => transfer());
  const upgrades: { node: string; readyMs: number; oldGoneMs: number }[] = [];
  const load = new Promise<ReturnType<typeof fortioLoad>>((resolve, reject) => {
    setImmediate(() => {
      try {
        resolve(fortioLoad('shop/client', `http://${SERVER}:8080/`, { qps: 500, conns: 8, seconds: SECONDS, keepalive: false }));
      } catch (err) {
        reject(err as Error);
      }
    });
  });
  // fortioLoad blocks this thread (spawnSync) for the whole run: the upgrades are driven by a child
  // process that runs `lab upgrade` on its own clock.
  const cli = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));
  const driver = spawn(process.execPath, ['-e', `
    const { spawnSync } = require('node:child_process');
    const wait = (ms) => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
    wait(3000); const a = Date.now(); const r2 = spawnSync(process.execPath, [${JSON.stringify(cli)}, 'lab', 'upgrade', 'node-2'], { encoding: 'utf8' });
    console.log(JSON.stringify({ node: 'node-2', out: r2.stdout.trim(), ms: Date.now() - a }));
    wait(3000); const b = Date.now(); const r1 = spawnSync(process.execPath, [${JSON.stringify(cli)}, 'lab', 'upgrade', 'node-1'], { encoding: 'utf8' });
    console.log(JSON.stringify({ node: 'node-1', out: r1.stdout.trim(), ms: Date.now() - b }));
  `], { stdio: ['ignore', 'pipe', 'inherit'] });
  let driven = '';
  driver.stdout.on('data', (c: Buffer) => (driven += String(c)));
  const driverDone = new Promise<void>((r) => driver.once('exit', () => r()));
  const result = await load;
  await driverDone;
  const done = await Promise.all(transfers);
  for (const line of driven.trim().split('\n').filter(Boolean)) {
    const d = JSON.parse(line) as { node: string; out: string; ms: number };
    upgrades.push({ node: d.node, readyMs: Number(/serving after (\d+) ms/.exec(d.out)?.[1] ?? NaN), oldGoneMs: d.ms });
  }
  const intact = done.filter((d) => d.ok && d.received === BYTES).length;
  const date = new Date().toISOString().slice(0, 10);
  const m = machine();
  const json = { date, machine: m, tool: `fortio ${/fortio-(v[\d.]+)/.exec(bin)?.[1] ?? ''}`, load: result, transfers: { count: TRANSFERS, bytes: BYTES, intact, results: done }, upgrades };
  const md = [
    `# Upgrades under load, measured with fortio ${date}`,
    '',
    `Both daemons of the demo lab upgraded in place (\`lab upgrade node-2\` at 3 s, \`lab upgrade node-1\` 3 s after that finished) while fortio opened 500 new connections a second (HTTP/1.1, keep-alive off, 8 at a time, ${SECONDS} s) from shop/client to shop/cart-remote, and ${TRANSFERS} transfers of ${BYTES / 1048576} MiB each at 1 MiB/s ran over the same path. Machine: ${m.cpus} × ${m.cpu}, Linux ${m.kernel}, Node ${m.node}; the daemons run their default --workers auto (2 here).`,
    '',
    '| | |',
    '|---|---|',
    `| new connections (requests) | ${result.requests} at ${result.achievedQps.toFixed(0)}/s |`,
    `| refused, reset or not 200 | ${result.errors} |`,
    `| p50 / p99 (ms) | ${result.p50.toFixed(2)} / ${result.p99.toFixed(2)} |`,
    `| long transfers intact (SHA-256) | ${intact} of ${TRANSFERS} |`,
    ...upgrades.map((u) => `| ${u.node}: new daemon serving / old one gone | ${u.readyMs} ms / ${u.oldGoneMs} ms |`),
    '',
    'The old daemon keeps its open connections until --drain-seconds (5 s) and exits as soon as they have ended (a connection still open at the deadline is cut: that is the deadline). The transfers end before it.',
    '',
  ].join('\n');
  writeResults('upgrade', date, json, md);
}

runLabBench(main);
