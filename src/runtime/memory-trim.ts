// What a burst leaves resident, given back once the daemon is quiet again:
// - V8's young generation grows during a burst (to 32 MB with its 16 MB semi-spaces) and shrinks only at
//   a collection that finds the allocation rate low; an idle daemon makes none, so it kept those 32 MB for
//   good. A young collection when the loop has been idle shrinks it back (1-2 ms, measured in
//   bench/results/2026-12-02/memory-trim.md).
// - glibc's malloc returns only the top of a heap to the kernel by itself, so the holes a burst leaves
//   (socket read buffers, the TLS and HTTP/2 state of connections since closed) stayed resident: 11-14 MB
//   of each lab daemon's 86 MB after 40 minutes. malloc_trim(0) gives them back, on a libuv pool thread so
//   the event loop does not wait (0.04 ms with nothing to give back, up to 3 ms after a burst). jemalloc
//   and tcmalloc do this on timers of their own.
import { performance, type EventLoopUtilization } from 'node:perf_hooks';
import v8 from 'node:v8';
import vm from 'node:vm';
import type { Logger } from 'pino';

export interface MemoryTrimmer {
  stop(): void;
}

/**
 * Below this share of the last interval spent working, the loop counts as idle (an idle daemon's is about
 * 0.001; on a busy node, time preempted inside its callbacks counts as working).
 */
export const IDLE_UTILIZATION = 0.05;

export interface YoungGenerationReading {
  /** The young generation's committed size now, and at its smallest (V8's initial size). */
  readonly bytes: number;
  readonly initialBytes: number;
  /** The event loop's utilization over the last interval (0..1). */
  readonly utilization: number;
}

/** Collect the young generation only when a burst has grown it and the loop has since been idle. */
export function shouldCollectYoung(r: YoungGenerationReading): boolean {
  return r.utilization < IDLE_UTILIZATION && r.bytes > 2 * r.initialBytes;
}

type Gc = (options: { type: 'minor' | 'major'; execution: 'sync' | 'async' }) => void;

/**
 * V8's gc(), without starting node with --expose-gc: the flag is read when a context is made, so it is set
 * for one new context and unset at once.
 */
function v8Gc(): Gc {
  v8.setFlagsFromString('--expose-gc');
  try {
    return vm.runInNewContext('gc') as Gc;
  } finally {
    v8.setFlagsFromString('--no-expose-gc');
  }
}

/** The young generation at its smallest: V8's initial semi-space of 1 MB (what a fresh daemon reports). */
const INITIAL_YOUNG_BYTES = 2 ** 20;

const youngBytes = (): number => v8.getHeapSpaceStatistics().find((s) => s.space_name === 'new_space')?.space_size ?? 0;

export interface MemoryTrimOptions {
  /**
   * Hands glibc's free pages back, off the event loop, and calls done (process-wide: one thread does it
   * for all). Given by the caller so that a process without the FFI (the waypoint) does not load it.
   */
  readonly mallocTrim?: (done: (err: unknown) => void) => void;
}

/** Every everyMs: the young generation collected if shouldCollectYoung says so, then malloc_trim if given; 0 never. */
export function startMemoryTrim(everyMs: number, logger: Logger, opts: MemoryTrimOptions = {}): MemoryTrimmer {
  if (everyMs <= 0) return { stop: () => undefined };
  const gc = v8Gc();
  let lastElu: EventLoopUtilization = performance.eventLoopUtilization();
  let trimming = false;
  const timer = setInterval(() => {
    const elu = performance.eventLoopUtilization(lastElu);
    lastElu = performance.eventLoopUtilization();
    const debug = logger.isLevelEnabled('debug');
    const rssBefore = debug ? process.memoryUsage.rss() : 0;
    const reading = { bytes: youngBytes(), initialBytes: INITIAL_YOUNG_BYTES, utilization: elu.utilization };
    const collected = shouldCollectYoung(reading);
    if (collected) gc({ type: 'minor', execution: 'sync' });
    const report = (): void => {
      if (debug) logger.debug({ youngMb: reading.bytes / 2 ** 20, collected, youngAfterMb: youngBytes() / 2 ** 20, rssBeforeMb: rssBefore / 2 ** 20, rssAfterMb: process.memoryUsage.rss() / 2 ** 20 }, 'memory given back to the kernel');
    };
    if (opts.mallocTrim === undefined || trimming) return report();
    trimming = true;
    opts.mallocTrim((err: unknown) => {
      trimming = false;
      if (err !== null && err !== undefined) logger.warn({ err }, 'malloc_trim failed');
      else report();
    });
  }, everyMs);
  timer.unref();
  return { stop: () => clearInterval(timer) };
}
