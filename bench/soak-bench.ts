// `npm run bench:soak -- [--minutes 30]` (root): load and soak in the lab (demo cluster, two nodes).
//   1. 1 GiB each way over one tunnelled connection, SHA-256 of both directions compared;
//   2. 10,000 tunnelled connections open at once, each echoing 64 random bytes exactly, and the daemons'
//      RSS per connection while they are held;
//   3. MINUTES of mixed traffic: fortio keep-alive requests throughout (200 qps over 16 connections),
//      bursts of new connections every 10 s, a 64 MiB transfer every 30 s, and every minute a policy
//      change and a namespace label flip; both daemons' RSS and open descriptors sampled every 10 s.
// Goals (issue 15): every byte exact, 0 errors, RSS and descriptors < 5% above their warm-up level.
// Writes bench/results/DATE/soak.{json,md}.
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command } from 'commander';
import { parseAllDocuments, stringify } from 'yaml';
import { labDown, labNetns, labUp, readLabState } from '../src/lab/lab.js';
import { probeInPod, spawnProbe, startProbeServers } from '../src/lab/probe-runner.js';
import { background, fortio, log, machine, median, openFds, rssMb, runInPod, runLabBench, sleep, writeResults } from './lab-load.js';

const MANIFESTS = fileURLToPath(new URL('../../manifests/examples/demo/cluster.yaml', import.meta.url));
const LOADGEN = fileURLToPath(new URL('../src/lab/loadgen.js', import.meta.url));
const SERVER = '10.244.2.10';
const HTTP_PORT = 8081;
const TICK_MS = 10_000;

interface Sample {
  readonly minute: number;
  readonly rssMb: number[];
  readonly fds: number[];
}

const json = <T>(line: string): T & { ok?: boolean } => {
  try {
    return JSON.parse(line) as T & { ok?: boolean };
  } catch {
    return { ok: false } as T & { ok?: boolean };
  }
};

/** The policy toggled every minute: it allows what already flows, so it must change nothing a client sees. */
const POLICY = `---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: soak-allow, namespace: shop }
spec:
  selector: { matchLabels: { app: cart } }
  action: ALLOW
  rules:
  - from: [{ source: { namespaces: ["shop", "legacy"] } }]
`;

/** The manifests with the legacy namespace labelled into the mesh. */
function withLegacyInMesh(text: string): string {
  const docs = parseAllDocuments(text).map((d) => d.toJS() as { kind?: string; metadata?: { name?: string; labels?: Record<string, string> } } | null);
  for (const d of docs) {
    if (d?.kind === 'Namespace' && d.metadata?.name === 'legacy') d.metadata.labels = { ...d.metadata.labels, 'istio.io/dataplane-mode': 'ambient' };
  }
  return docs.map((d) => stringify(d)).join('---\n');
}

async function main(): Promise<void> {
  const o = new Command().option('--minutes <n>', 'length of the mixed-traffic phase', '30').parse(process.argv).opts<{ minutes: string }>();
  const minutes = Number(o.minutes);
  if (process.getuid?.() !== 0) throw new Error('needs root (network namespaces, eBPF)');
  const bin = fortio();
  if (bin === undefined) throw new Error('fortio is not available: it needs Go (scripts/go-tool.sh fortio)');
  if (labNetns().length > 0 || readLabState() !== undefined) await labDown();
  const state = await labUp(MANIFESTS);
  const daemons = state.nodes.map((n) => n.pid);
  const original = readFileSync(state.manifests, 'utf8');
  const changed = `${withLegacyInMesh(original)}${POLICY}`;
  startProbeServers(['shop/cart-remote', 'shop/cart-local']);
  background('shop/cart-remote', process.execPath, [LOADGEN, 'serve', String(HTTP_PORT), '1024']);
  await sleep(1500);

  log('1. 1 GiB each way over one connection');
  const gib = json<{ sent: number; received: number; seconds: number; gbitPerSecondEachWay: number }>(probeInPod('shop/client', 'stream', SERVER, '8080', String(1024 ** 3)));
  log(`   ${JSON.stringify(gib)}`);

  log('2. 10,000 connections at once, 64 bytes echoed on each');
  const rssBefore = daemons.map(rssMb);
  const many = spawnProbe('shop/client', 'many', SERVER, '8080', '10000', '64', '20');
  let manyOut = '';
  many.stdout?.on('data', (c: Buffer) => (manyOut += String(c)));
  const deadline = Date.now() + 120_000;
  while (!manyOut.includes('established') && Date.now() < deadline) await sleep(200);
  await sleep(5000); // settled: the allocations of the opening burst are done
  const rssHeld = daemons.map(rssMb);
  const fdsHeld = daemons.map(openFds);
  await new Promise<void>((r) => many.once('exit', () => r()));
  const manyResult = json<{ count: number; exact: number; failed: number; stillOpen: number }>(manyOut.trim().split('\n').at(-1) ?? '');
  const kbPerConnection = daemons.map((_, i) => (((rssHeld[i] ?? NaN) - (rssBefore[i] ?? NaN)) * 1024) / 10_000);
  log(`   ${JSON.stringify(manyResult)}; RSS ${rssBefore.map((x) => x.toFixed(0)).join('+')} -> ${rssHeld.map((x) => x.toFixed(0)).join('+')} MiB (${kbPerConnection.map((x) => x.toFixed(1)).join(' and ')} KiB a connection); fds ${fdsHeld.join('+')}`);
  await sleep(5000);

  log(`3. ${minutes} minutes of mixed traffic`);
  const fortioOut = join(state.manifests, '..', 'soak-fortio.json');
  const fortioRun = runInPod('shop/client', bin, ['load', '-qps', '200', '-c', '16', '-uniform', '-t', `${minutes * 60}s`, '-json', fortioOut, '-r', '0.0001', `http://${SERVER}:${HTTP_PORT}/`]);
  const started = Date.now();
  const samples: Sample[] = [];
  const errors = { newConnections: 0, transfers: 0, transferMismatch: 0 };
  let connections = 0;
  let transfers = 0;
  let changes = 0;
  for (let tick = 0; Date.now() - started < minutes * 60_000; tick++) {
    const tickStart = Date.now();
    const burst = json<{ count?: number }>(probeInPod('shop/client', 'connrate', SERVER, '8080', '100', '4'));
    connections += 100;
    errors.newConnections += 100 - (burst.count ?? 0);
    if (tick % 3 === 0) {
      const t = json<{ received: number }>(probeInPod('shop/client', 'stream', SERVER, '8080', String(64 * 1024 * 1024)));
      transfers += 1;
      if (t.ok !== true) errors[t.received === undefined ? 'transfers' : 'transferMismatch'] += 1;
    }
    if (tick % 6 === 5) {
      // Every minute: the policy in or out, and the legacy namespace into the mesh or out of it.
      const on = changes % 2 === 0;
      writeFileSync(state.manifests, on ? changed : original);
      changes += 1;
    }
    samples.push({ minute: (Date.now() - started) / 60_000, rssMb: daemons.map(rssMb), fds: daemons.map(openFds) });
    const last = samples.at(-1) as Sample;
    if (tick % 6 === 0) log(`   ${last.minute.toFixed(1)} min: RSS ${last.rssMb.map((x) => x.toFixed(1)).join('+')} MiB, fds ${last.fds.join('+')}, errors ${JSON.stringify(errors)}`);
    await sleep(Math.max(0, TICK_MS - (Date.now() - tickStart)));
  }
  writeFileSync(state.manifests, original);
  await new Promise<void>((r) => (fortioRun.exitCode !== null ? r() : fortioRun.once('exit', () => r())));
  const f = JSON.parse(readFileSync(fortioOut, 'utf8')) as { ActualQPS: number; DurationHistogram: { Count: number }; RetCodes: Record<string, number> };
  const fortioErrors = f.DurationHistogram.Count - (f.RetCodes['200'] ?? 0);

  // Warm-up: the first 5 minutes (or the first third of a shorter run); growth is the last 3 minutes'
  // median against the median of the 2 minutes after warm-up.
  const warm = Math.min(5, minutes / 3);
  const window = (from: number, to: number, pick: (s: Sample) => number): number => median(samples.filter((s) => s.minute >= from && s.minute < to).map(pick));
  const growth = daemons.map((_, i) => {
    const rssBase = window(warm, warm + 2, (s) => s.rssMb[i] ?? NaN);
    const rssEnd = window(minutes - 3, minutes + 1, (s) => s.rssMb[i] ?? NaN);
    const fdBase = window(warm, warm + 2, (s) => s.fds[i] ?? NaN);
    const fdEnd = window(minutes - 3, minutes + 1, (s) => s.fds[i] ?? NaN);
    return { node: state.nodes[i]?.name, rssBaseMb: rssBase, rssEndMb: rssEnd, rssGrowthPct: ((rssEnd - rssBase) / rssBase) * 100, fdBase, fdEnd, fdGrowthPct: ((fdEnd - fdBase) / fdBase) * 100 };
  });
  const totalErrors = errors.newConnections + errors.transfers + errors.transferMismatch + fortioErrors;
  const date = new Date().toISOString().slice(0, 10);
  const result = {
    tool: 'fortio',
    fortio: /fortio-(v[\d.]+)/.exec(bin)?.[1] ?? bin,
    machine: machine(),
    oneGiB: gib,
    tenThousand: { ...manyResult, rssBeforeMb: rssBefore, rssHeldMb: rssHeld, fdsHeld, kbPerConnection },
    soak: { minutes, requests: f.DurationHistogram.Count, achievedQps: f.ActualQPS, fortioErrors, connections, transfers, policyAndLabelChanges: changes, errors, growth, samples },
  };
  const pct = (x: number): string => `${x >= 0 ? '+' : ''}${x.toFixed(1)}%`;
  const md = [
    `# Soak and load, ${date} (lab, ${machine().cpus} CPUs; requests by fortio ${result.fortio})`,
    '',
    '| figure | result | goal |',
    '|---|---|---|',
    `| 1 GiB each way over one connection | ${gib.ok === true ? 'SHA-256 equal' : 'MISMATCH'}, ${gib.gbitPerSecondEachWay?.toFixed(2) ?? '?'} Gbit/s each way | SHA-256 equal |`,
    `| 10,000 connections at once, 64 B each | ${manyResult.exact ?? 0} exact, ${manyResult.failed ?? '?'} failed, ${manyResult.stillOpen ?? '?'} still open after 20 s | all exact |`,
    `| RSS per held connection (node-1, node-2) | ${kbPerConnection.map((x) => `${x.toFixed(1)} KiB`).join(', ')} | ≤ 8 KiB |`,
    `| ${minutes} min mixed: requests, new connections, 64 MiB transfers, policy+label changes | ${f.DurationHistogram.Count}, ${connections}, ${transfers}, ${changes} | - |`,
    `| errors (requests, new connections, transfers, mismatches) | ${fortioErrors}, ${errors.newConnections}, ${errors.transfers}, ${errors.transferMismatch} | 0 |`,
    ...growth.map((g) => `| ${g.node}: RSS ${g.rssBaseMb.toFixed(1)} → ${g.rssEndMb.toFixed(1)} MiB, fds ${g.fdBase} → ${g.fdEnd} | ${pct(g.rssGrowthPct)} RSS, ${pct(g.fdGrowthPct)} fds | < 5% after warm-up |`),
    '',
    `Warm-up: the first ${warm.toFixed(1)} minutes; growth compares the median of the last 3 minutes with the median of the 2 after warm-up. Samples every 10 s in soak.json.`,
    '',
  ].join('\n');
  writeResults('soak', date, result, md);
  if (totalErrors > 0 || gib.ok !== true || manyResult.ok !== true) process.exitCode = 1;
}

runLabBench(main);
