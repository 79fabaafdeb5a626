// The capture program must load in a daemon that is being profiled: V8's sampler sends SIGPROF to the
// main thread every interval, and the kernel's verifier abandons a load with EAGAIN when a signal is
// pending (npm run bench:profile could not start its daemons).
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';

const skip = process.getuid?.() !== 0 ? 'needs root to load eBPF programs (CI runs as root)' : undefined;
const PROGRAM = fileURLToPath(new URL('../../src/datapath/capture-program.js', import.meta.url));

t.test('the capture program loads, three times, under a profiler sampling every 50 µs', { skip: skip ?? false }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'ztunnel-ts-prof-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const script = `
    const { CaptureProgram } = await import(${JSON.stringify(PROGRAM)});
    for (let i = 0; i < 3; i++) CaptureProgram.load().close();
    process.stdout.write('loaded');`;
  const r = spawnSync(process.execPath, ['--cpu-prof', '--cpu-prof-interval=50', `--cpu-prof-dir=${dir}`, '--input-type=module', '-e', script], {
    encoding: 'utf8',
    timeout: 60_000,
  });
  t.equal(r.stdout, 'loaded', `the child said: ${r.stderr.split('\n').filter((l) => /Error|libbpf: prog/.test(l)).join(' | ')}`);
  t.equal(r.status, 0);
});
