// CI's short run of the coverage-guided fuzzers (npm run fuzz is the long one): every target of
// fuzz/targets runs from its seeds for a few seconds, executes inputs, gains coverage and finds nothing.
// A planted bug shows the harness would report one. Skipped, saying why, where the fuzzer cannot be
// built (it needs clang-14 and libclang-rt-14-dev; .ci/run installs them).
import { mkdtempSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { fuzzOne, projectTargets, toolDir, type FuzzDirs } from '../../fuzz/run.js';

const SECONDS = Number(process.env['ZTUNNEL_FUZZ_SECONDS'] ?? 5);

let tools: string | undefined;
let why = '';
try {
  tools = toolDir();
} catch (err) {
  why = (err as Error).message;
}

t.test('every fuzz target runs from its seeds and finds nothing', { skip: tools === undefined ? why : false }, async (t) => {
  const scratch = mkdtempSync(join(tmpdir(), 'ztl-fuzz-'));
  const dirs: FuzzDirs = { bundles: join(scratch, 'bundles'), work: join(scratch, 'corpus'), artifacts: join(scratch, 'findings') };
  const targets = projectTargets();
  t.ok(targets.length >= 6, `targets: ${targets.map((x) => x.name).join(', ')}`);
  for (const target of targets) {
    const r = await fuzzOne(tools ?? '', target, SECONDS, dirs);
    t.same(r.findings, [], `${target.name}: no finding in ${r.executions} inputs${r.findings.length > 0 ? `\n${r.tail}` : ''}`);
    t.equal(r.exitCode, 0, `${target.name}: the fuzzer ended normally${r.exitCode === 0 ? '' : ` (signal ${r.signal ?? 'none'})\n${r.tail.slice(-3000)}`}`);
    t.ok(r.executions > 100 && r.coverage > 0, `${target.name}: ${r.executions} inputs, coverage ${r.coverage}, corpus ${r.corpus}`);
  }
});

t.test('a planted bug is found, and its input written', { skip: tools === undefined ? why : false }, async (t) => {
  const scratch = mkdtempSync(join(tmpdir(), 'ztl-fuzz-'));
  const seeds = join(scratch, 'seeds');
  mkdirSync(seeds);
  writeFileSync(join(seeds, 'a'), 'HB');
  const source = join(scratch, 'planted.ts');
  // Only coverage feedback gets from the seed to "HBON" in seconds: each byte is a branch of its own.
  writeFileSync(source, `export function fuzz(d: Buffer): void {
  if (d[0] === 0x48 && d[1] === 0x42) { if (d[2] === 0x4f) { if (d[3] === 0x4e) throw new Error('planted'); } }
}
`);
  const dirs: FuzzDirs = { bundles: join(scratch, 'bundles'), work: join(scratch, 'corpus'), artifacts: join(scratch, 'findings') };
  const r = await fuzzOne(tools ?? '', { name: 'planted', source, seeds, async: false }, 60, dirs);
  t.equal(r.findings.length, 1, 'one finding');
  t.not(r.exitCode, 0, 'the run fails');
  t.equal(readFileSync(r.findings[0] ?? '').subarray(0, 4).toString(), 'HBON', 'its input is the one that reaches the bug');
});
