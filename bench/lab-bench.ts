// `npm run bench:lab` (root): connection rate and latency from a pod to a pod on the other node in the lab,
// direct (namespace not in the mesh) versus through the two daemons (eBPF capture + HBONE), measured in
// turn (A B A B …) so that drift affects both. Writes bench/results/DATE/lab.{json,md}.
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, release } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { labDown, labNetns, labUp, readLabState } from '../src/lab/lab.js';
import { probeInPod, startProbeServers } from '../src/lab/probe-runner.js';

const MANIFESTS = fileURLToPath(new URL('../../manifests/examples/demo/cluster.yaml', import.meta.url));
const RESULTS = fileURLToPath(new URL('../../bench/results/', import.meta.url));
const TARGET = '10.244.2.10';
const ROUNDS = Number(process.env['BENCH_ROUNDS'] ?? 3);
const CONNECTIONS = Number(process.env['BENCH_CONNECTIONS'] ?? 2000);
const CONCURRENCY = Number(process.env['BENCH_CONCURRENCY'] ?? 8);
const ROUND_TRIPS = Number(process.env['BENCH_ROUND_TRIPS'] ?? 5000);

type Mode = 'direct' | 'ztunnel-ts';
interface Sample {
  perSecond: number;
  p50: number;
  p90: number;
  p99: number;
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] ?? NaN;
};

function run(kind: 'connrate' | 'pingpong'): Sample {
  const args = kind === 'connrate' ? [String(CONNECTIONS), String(CONCURRENCY)] : [String(ROUND_TRIPS)];
  const r = JSON.parse(probeInPod('shop/client', kind, TARGET, '8080', ...args)) as Sample & { ok: boolean; error?: string };
  if (!r.ok) throw new Error(`${kind}: ${r.error ?? 'failed'}`);
  return r;
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('needs root (network namespaces, eBPF)');
  if (labNetns().length > 0 || readLabState() !== undefined) await labDown();
  const state = await labUp(MANIFESTS);
  try {
    startProbeServers(['shop/cart-remote']);
    await new Promise((r) => setTimeout(r, 500));
    const original = readFileSync(state.manifests, 'utf8');
    const results: Record<Mode, { connrate: Sample[]; pingpong: Sample[] }> = {
      direct: { connrate: [], pingpong: [] },
      'ztunnel-ts': { connrate: [], pingpong: [] },
    };
    for (let round = 1; round <= ROUNDS; round++) {
      for (const mode of ['direct', 'ztunnel-ts'] as const) {
        writeFileSync(state.manifests, mode === 'direct' ? original.replace('istio.io/dataplane-mode: ambient', 'istio.io/dataplane-mode: none') : original);
        await new Promise((r) => setTimeout(r, 1500));
        run('pingpong'); // warm-up: pooled HBONE connection, JIT
        const c = run('connrate');
        const p = run('pingpong');
        results[mode].connrate.push(c);
        results[mode].pingpong.push(p);
        process.stdout.write(
          `round ${round}/${ROUNDS} ${mode.padEnd(10)} ${c.perSecond.toFixed(0)} conn/s (p50 ${c.p50.toFixed(3)} ms, p99 ${c.p99.toFixed(3)} ms)  round trip p50 ${p.p50.toFixed(3)} ms p99 ${p.p99.toFixed(3)} ms\n`,
        );
      }
    }
    writeFileSync(state.manifests, original);
    const summary = Object.fromEntries(
      (Object.keys(results) as Mode[]).map((mode) => [
        mode,
        {
          connPerSecond: median(results[mode].connrate.map((s) => s.perSecond)),
          connectP50Ms: median(results[mode].connrate.map((s) => s.p50)),
          connectP99Ms: median(results[mode].connrate.map((s) => s.p99)),
          roundTripP50Ms: median(results[mode].pingpong.map((s) => s.p50)),
          roundTripP99Ms: median(results[mode].pingpong.map((s) => s.p99)),
        },
      ]),
    ) as unknown as Record<Mode, Record<string, number>>;
    const machine = { cpus: cpus().length, cpu: cpus()[0]?.model ?? '?', kernel: release(), node: process.version };
    const date = new Date().toISOString().slice(0, 10);
    const dir = join(RESULTS, date);
    mkdirSync(dir, { recursive: true });
    const params = { rounds: ROUNDS, connections: CONNECTIONS, concurrency: CONCURRENCY, roundTrips: ROUND_TRIPS, payloadBytes: 64 };
    writeFileSync(join(dir, 'lab.json'), `${JSON.stringify({ date, machine, params, summary, results }, null, 2)}\n`);
    const d = summary.direct;
    const z = summary['ztunnel-ts'];
    const row = (name: string, key: string, digits: number): string =>
      `| ${name} | ${(d[key] ?? NaN).toFixed(digits)} | ${(z[key] ?? NaN).toFixed(digits)} | ${((z[key] ?? NaN) / (d[key] ?? NaN)).toFixed(2)}× |`;
    const md = [
      `# Lab benchmark ${date}`,
      '',
      `Pod → pod on the other node, 64-byte echo. Medians of ${ROUNDS} rounds, modes measured in turn. Machine: ${machine.cpus} × ${machine.cpu}, Linux ${machine.kernel}, Node ${machine.node}; the two daemons, the pods and the load share these cores.`,
      '',
      '| metric | direct | ztunnel-ts | ratio |',
      '|---|---|---|---|',
      row(`new connections/s (${CONCURRENCY} at a time)`, 'connPerSecond', 0),
      row('connect + first echo p50 (ms)', 'connectP50Ms', 3),
      row('connect + first echo p99 (ms)', 'connectP99Ms', 3),
      row('round trip on an open connection p50 (ms)', 'roundTripP50Ms', 3),
      row('round trip on an open connection p99 (ms)', 'roundTripP99Ms', 3),
      '',
    ].join('\n');
    writeFileSync(join(dir, 'lab.md'), md);
    process.stdout.write(`\n${md}\nwritten to ${dir}\n`);
  } finally {
    await labDown();
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`bench failed: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
