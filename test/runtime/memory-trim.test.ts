// The daemon's memory trim: what a burst leaves resident goes back to the kernel on the trimmer's timer,
// and stays without it. glibc's free pages: the heap is fragmented through libc itself (blocks of 64 KiB,
// below glibc's mmap threshold, every other one kept), as a burst of socket reads leaves it. V8's young
// generation: grown by a burst of short-lived objects, in a child process.
import { execFile } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import koffi from 'koffi';
import pino from 'pino';
import t from 'tap';
import { configFromFlags } from '../../src/config/config.js';
import { waypointConfigFromFlags } from '../../src/config/waypoint-config.js';
import { glibcMallocTrim } from '../../src/runtime/malloc-trim.js';
import { IDLE_UTILIZATION, shouldCollectYoung, startMemoryTrim } from '../../src/runtime/memory-trim.js';

const run = promisify(execFile);
const libc = koffi.load('libc.so.6');
const malloc = libc.func('void *malloc(size_t size)');
const free = libc.func('void free(void *ptr)');
const memset = libc.func('void *memset(void *s, int c, size_t n)');

const BLOCK = 64 * 1024;
const BLOCKS = 1024;
const MiB = 2 ** 20;
const rssMb = (): number => process.memoryUsage.rss() / MiB;

/** Leaves BLOCKS/2 free blocks between kept ones (their pages touched); returns the kept ones' release. */
function fragment(): () => void {
  const blocks: unknown[] = [];
  for (let i = 0; i < BLOCKS; i++) {
    const p = malloc(BLOCK);
    memset(p, 1, BLOCK);
    blocks.push(p);
  }
  const kept = blocks.filter((p, i) => (i % 2 === 0 ? true : (free(p), false)));
  return () => kept.forEach((p) => free(p));
}

const freedMb = (BLOCKS / 2) * (BLOCK / MiB); // 32 MiB

t.test('free heap pages stay resident without the trimmer and go back to the kernel with it', async (t) => {
  const logs: Record<string, unknown>[] = [];
  const logger = pino({ level: 'debug' }, { write: (l: string) => void logs.push(JSON.parse(l) as Record<string, unknown>) });
  const before = rssMb();
  const release = fragment();
  t.teardown(release);
  const off = startMemoryTrim(0, logger);
  await sleep(300);
  off.stop();
  const fragmented = rssMb();
  t.ok(fragmented - before > freedMb, `without trimming the freed blocks stay resident (RSS ${before.toFixed(0)} → ${fragmented.toFixed(0)} MB)`);

  const trimmer = startMemoryTrim(50, logger, { mallocTrim: glibcMallocTrim });
  t.teardown(() => trimmer.stop());
  await sleep(400);
  const trimmed = rssMb();
  t.ok(fragmented - trimmed > freedMb * 0.75, `the trimmer gave back the freed blocks (RSS ${fragmented.toFixed(0)} → ${trimmed.toFixed(0)} MB, ${freedMb} MB freed)`);
  t.ok(logs.some((l) => l['msg'] === 'memory given back to the kernel' && typeof l['rssAfterMb'] === 'number'), 'each trim is in the debug log with the RSS it left');
});

t.test('a stopped trimmer trims no more', async (t) => {
  const trimmer = startMemoryTrim(50, pino({ level: 'silent' }), { mallocTrim: glibcMallocTrim });
  trimmer.stop();
  const release = fragment();
  t.teardown(release);
  const fragmented = rssMb();
  await sleep(300);
  t.ok(rssMb() > fragmented - freedMb * 0.25, `the freed blocks are still resident (RSS ${fragmented.toFixed(0)} → ${rssMb().toFixed(0)} MB)`);
});

t.test('--memory-trim values', async (t) => {
  const base = { node: 'n1', manifests: '/tmp' };
  t.equal(configFromFlags(base).memoryTrimMs, 10_000, 'every 10 s unless told');
  t.equal(configFromFlags({ ...base, memoryTrim: '0' }).memoryTrimMs, 0, '0: never');
  t.throws(() => configFromFlags({ ...base, memoryTrim: '-1' }), /--memory-trim must not be negative/);
  t.throws(() => configFromFlags({ ...base, memoryTrim: 'often' }), /--memory-trim must be a number/);
  const waypoint = { name: 'waypoint', namespace: 'app', manifests: '/tmp' };
  t.equal(waypointConfigFromFlags(waypoint).memoryTrimMs, 10_000, 'the waypoint too: every 10 s unless told');
  t.equal(waypointConfigFromFlags({ ...waypoint, memoryTrim: '0' }).memoryTrimMs, 0, 'the waypoint: 0 is never');
  t.throws(() => waypointConfigFromFlags({ ...waypoint, memoryTrim: '1.5' }), /--memory-trim must be a whole number/);
});

t.test('the young generation is collected only when a burst grew it and the loop has been idle since', async (t) => {
  const MB = 2 ** 20;
  const rows: [string, number, number, boolean][] = [
    ['grown to 32 MB, idle', 32 * MB, 0.001, true],
    ['grown, busy', 32 * MB, 0.3, false],
    ['grown, just above idle', 32 * MB, IDLE_UTILIZATION, false],
    ['at its initial 1 MB, idle', 1 * MB, 0.001, false],
    ['twice its initial size, idle: V8 keeps that much itself', 2 * MB, 0.001, false],
    ['4 MB, idle', 4 * MB, 0.001, true],
  ];
  for (const [what, bytes, utilization, want] of rows) t.equal(shouldCollectYoung({ bytes, initialBytes: MB, utilization }), want, what);
});

// In a child process of its own: this one's young generation has grown already. Without V8's memory
// reducer, which on a slow machine may happen to collect 8 s after the burst's last full collection: in
// the lab the daemons kept their 32 MB regardless (bench/results/2026-12-02/memory-trim.md).
const BURST = `
import pino from 'pino';
import { startMemoryTrim } from ${JSON.stringify(new URL('../../src/runtime/memory-trim.js', import.meta.url).href)};
const youngMb = () => v8.getHeapSpaceStatistics().find((s) => s.space_name === 'new_space').space_size / 2 ** 20;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const fresh = youngMb();
// A burst whose objects live a little (a window of the last 20,000), as open connections' state does.
let window = [];
for (let i = 0; i < 3_000_000; i++) {
  window.push({ i, s: 'x' + i });
  if (window.length > 20_000) window = window.slice(10_000);
}
window = [];
const grown = youngMb();
// V8 judges the allocation rate over its last 5 s of collections: past them the burst no longer counts.
await sleep(5500);
const idle = youngMb();
// The trimmer's log (debug) goes to stderr, for the test's diagnostics.
const trimmer = startMemoryTrim(Number(process.argv[1]), pino({ level: 'debug' }, pino.destination(2)));
for (const until = Date.now() + 3000; Date.now() < until && youngMb() > 2; ) await sleep(100);
trimmer.stop();
process.stdout.write(JSON.stringify({ fresh, grown, idle, trimmed: youngMb() }));
`;

type Burst = { fresh: number; grown: number; idle: number; trimmed: number; log: string };
const burst = async (everyMs: number): Promise<Burst> => {
  const { stdout, stderr } = await run(process.execPath, ['--no-memory-reducer', '--input-type=module', '-e', BURST, String(everyMs)], { encoding: 'utf8', cwd: fileURLToPath(new URL('.', import.meta.url)) });
  return { ...(JSON.parse(stdout) as Omit<Burst, 'log'>), log: stderr };
};

t.test('after a burst, an idle process gives its grown young generation back', async (t) => {
  const [r, off] = await Promise.all([burst(200), burst(0)]);
  t.ok(r.grown >= 4 * r.fresh, `the burst grew the young generation (${r.fresh} → ${r.grown} MB)`);
  t.equal(r.idle, r.grown, 'idle, V8 keeps it grown by itself');
  t.ok(r.trimmed <= 2, `with the trimmer it is back near V8's initial 1 MB (${r.grown} → ${r.trimmed} MB)`, { trimmerLog: r.log });
  t.equal(off.trimmed, off.grown, `with --memory-trim 0 it stays grown (${off.trimmed} MB)`);
});
