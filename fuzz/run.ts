// Coverage-guided fuzzing of every parser that takes outside input (fuzz/targets/), with Jazzer.js on
// libFuzzer (built by scripts/fuzz-tool.sh). Each target is bundled into CommonJS (Jazzer instruments
// code as it is require()d, and the project is ES modules), then fuzzed for --seconds from the committed
// seeds plus what earlier runs found (kept in the cache, outside the repository).
//   npm run fuzz -- [--seconds 300] [--json FILE] [target ...]
// Exit 0: no finding. Exit 1: a finding (its input is written under the artifacts directory, named in
// the output). Exit 2: the fuzzer could not be built or run.
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command } from 'commander';

const repo = join(import.meta.dirname, '..', '..');
const ASYNC_TARGETS = new Set(['ca']);

export interface TargetResult {
  readonly target: string;
  readonly seconds: number;
  readonly executions: number;
  readonly coverage: number;
  readonly corpus: number;
  /** Input files of findings, empty when none. */
  readonly findings: string[];
  readonly exitCode: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly tail: string;
}

/** The built fuzzer's directory; throws saying why when it cannot be built here. */
export function toolDir(): string {
  const r = spawnSync('bash', [join(repo, 'scripts', 'fuzz-tool.sh')], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
  if (r.status !== 0) throw new Error(`scripts/fuzz-tool.sh failed (exit ${r.status ?? r.signal}): the fuzzer is not available`);
  return r.stdout.trim();
}

interface Esbuild {
  build(o: Record<string, unknown>): Promise<{ warnings: unknown[] }>;
}

export interface FuzzTarget {
  readonly name: string;
  /** Its TypeScript source. */
  readonly source: string;
  /** Seed corpus directory. */
  readonly seeds: string;
  /** Its fuzz() returns a promise. */
  readonly async: boolean;
}

export interface FuzzDirs {
  /** Where the CommonJS bundles go. */
  readonly bundles: string;
  /** Corpus each run adds to, per target. */
  readonly work: string;
  /** Inputs of findings, per target. */
  readonly artifacts: string;
}

/** Every target in fuzz/targets, with its committed seeds. */
export function projectTargets(): FuzzTarget[] {
  return readdirSync(join(repo, 'fuzz', 'targets'))
    .filter((f) => f.endsWith('.ts') && f !== 'contract.ts')
    .map((f) => f.slice(0, -3))
    .map((name) => ({ name, source: join(repo, 'fuzz', 'targets', `${name}.ts`), seeds: join(repo, 'fuzz', 'corpus', name), async: ASYNC_TARGETS.has(name) }));
}

async function bundle(tools: string, target: FuzzTarget, outDir: string): Promise<string> {
  const esbuild = createRequire(join(tools, 'package.json'))('esbuild') as Esbuild;
  mkdirSync(outDir, { recursive: true });
  // The bundles are CommonJS inside an ES-module package.
  writeFileSync(join(outDir, 'package.json'), '{ "type": "commonjs" }\n');
  const outfile = join(outDir, `${target.name}.js`);
  await esbuild.build({
    entryPoints: [target.source],
    bundle: true,
    platform: 'node',
    format: 'cjs',
    target: 'node20',
    outfile,
    logLevel: 'error',
  });
  return outfile;
}

/** libFuzzer's progress lines: "#1234\tNEW    cov: 56 ft: 78 corp: 9/100b ..." and its final stats. */
export function readProgress(output: string): { executions: number; coverage: number; corpus: number } {
  let executions = 0;
  let coverage = 0;
  let corpus = 0;
  for (const m of output.matchAll(/^#(\d+)\s+\w+\s+cov: (\d+) ft: \d+ corp: (\d+)\//gm)) {
    executions = Math.max(executions, Number(m[1]));
    coverage = Math.max(coverage, Number(m[2]));
    corpus = Number(m[3]);
  }
  const done = /^Done (\d+) runs/m.exec(output) ?? /stat::number_of_executed_units: (\d+)/.exec(output);
  if (done !== null) executions = Math.max(executions, Number(done[1]));
  return { executions, coverage, corpus };
}

/** Fuzzes one target for `seconds`; its result, findings included. */
export async function fuzzOne(tools: string, target: FuzzTarget, seconds: number, dirs: FuzzDirs): Promise<TargetResult> {
  const file = await bundle(tools, target, dirs.bundles);
  const work = join(dirs.work, target.name);
  const artifacts = join(dirs.artifacts, target.name);
  mkdirSync(work, { recursive: true });
  mkdirSync(artifacts, { recursive: true });
  const before = new Set(readdirSync(artifacts));
  const jazzer = join(tools, 'node_modules', '@jazzer.js', 'core', 'dist', 'cli.js');
  const args = [
    jazzer,
    file,
    work,
    target.seeds,
    ...(target.async ? [] : ['--sync']),
    '--',
    `-max_total_time=${seconds}`,
    `-artifact_prefix=${artifacts}/`,
    '-timeout=10',
    '-rss_limit_mb=4096',
    '-max_len=16384',
    '-print_final_stats=1',
  ];
  const started = Date.now();
  // Without NODE_OPTIONS: a test runner's preloads (tap's, which it also puts back into a plain spawn of
  // node) handle SIGALRM; libFuzzer then leaves its per-input timeout unhandled and the first alarm
  // kills the run. env(1) drops it after any such wrapping.
  const child = spawn('env', ['-u', 'NODE_OPTIONS', process.execPath, ...args], { cwd: work, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.on('data', (c: Buffer) => (output += c.toString()));
  child.stderr.on('data', (c: Buffer) => (output += c.toString()));
  const [exitCode, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve) => child.on('close', (code, sig) => resolve([code, sig])));
  const findings = readdirSync(artifacts).filter((f) => !before.has(f)).map((f) => join(artifacts, f));
  return { target: target.name, seconds: Math.round((Date.now() - started) / 1000), ...readProgress(output), findings, exitCode, signal, tail: output.split('\n').slice(-40).join('\n') };
}

async function main(): Promise<void> {
  const program = new Command('fuzz')
    .option('--seconds <n>', 'fuzzing time per target', '300')
    .option('--json <file>', 'also write the results as JSON')
    .argument('[targets...]', 'targets (default: all in fuzz/targets)')
    .parse();
  const opts = program.opts<{ seconds: string; json?: string }>();
  const all = projectTargets();
  const names = program.args.length > 0 ? program.args : all.map((t) => t.name);
  const unknown = names.filter((n) => !all.some((t) => t.name === n));
  if (unknown.length > 0) throw new Error(`no fuzz target ${unknown.join(', ')} (there are: ${all.map((t) => t.name).join(', ')})`);
  const tools = toolDir();
  const cache = join(tools, '..');
  const dirs: FuzzDirs = { bundles: join(repo, 'dist', 'fuzz-bundles'), work: join(cache, 'corpus'), artifacts: join(cache, 'findings') };
  const results: TargetResult[] = [];
  for (const target of all.filter((t) => names.includes(t.name))) {
    const r = await fuzzOne(tools, target, Number(opts.seconds), dirs);
    results.push(r);
    const verdict = r.findings.length > 0 ? `FINDING: ${r.findings.join(', ')}` : r.exitCode === 0 ? 'no finding' : `fuzzer exited ${r.exitCode}`;
    console.log(`${r.target.padEnd(18)} ${String(r.seconds).padStart(5)} s ${String(r.executions).padStart(10)} inputs  cov ${String(r.coverage).padStart(5)}  corpus ${String(r.corpus).padStart(5)}  ${verdict}`);
    if (r.exitCode !== 0) console.log(r.tail);
  }
  if (opts.json !== undefined) writeFileSync(opts.json, JSON.stringify({ tool: 'jazzer.js 2.1.0 on libFuzzer (LLVM 14)', results: results.map(({ tail: _tail, ...r }) => r) }, null, 2) + '\n');
  const failed = results.filter((r) => r.exitCode !== 0);
  process.exitCode = failed.some((r) => r.findings.length > 0) ? 1 : failed.length > 0 ? 2 : 0;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  main().catch((err: Error) => {
    console.error(`fuzz: ${err.message}`);
    process.exitCode = 2;
  });
}
