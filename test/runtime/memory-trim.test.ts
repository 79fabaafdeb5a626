// The daemon's memory trim: pages that glibc's malloc keeps after free() go back to the kernel on the
// trimmer's timer, and stay resident without it. The heap is fragmented through libc itself (blocks of
// 64 KiB, below glibc's mmap threshold, every other one kept), as a burst of socket reads leaves it.
import { setTimeout as sleep } from 'node:timers/promises';
import koffi from 'koffi';
import pino from 'pino';
import t from 'tap';
import { configFromFlags } from '../../src/config/config.js';
import { startMemoryTrim } from '../../src/runtime/memory-trim.js';

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

  const trimmer = startMemoryTrim(50, logger);
  t.teardown(() => trimmer.stop());
  await sleep(400);
  const trimmed = rssMb();
  t.ok(fragmented - trimmed > freedMb * 0.75, `the trimmer gave back the freed blocks (RSS ${fragmented.toFixed(0)} → ${trimmed.toFixed(0)} MB, ${freedMb} MB freed)`);
  t.ok(logs.some((l) => l['msg'] === 'free heap pages returned to the kernel' && typeof l['rssAfterMb'] === 'number'), 'each trim is in the debug log with the RSS it left');
});

t.test('a stopped trimmer trims no more', async (t) => {
  const trimmer = startMemoryTrim(50, pino({ level: 'silent' }));
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
});
