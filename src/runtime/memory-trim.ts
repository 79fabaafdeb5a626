// glibc's malloc keeps what free() gives back: only memory at the top of a heap returns to the kernel, so
// the holes a burst leaves behind (socket read buffers, the TLS and HTTP/2 state of connections since
// closed) stay resident for the life of the process. In the lab, after a few runs at the highest rate,
// 11-14 MB of each daemon's 86 MB were such pages (malloc_trim called from gdb). jemalloc and tcmalloc
// return them on timers of their own; with glibc the process has to ask. It does, every few seconds, on a
// libuv pool thread so that the event loop does not wait (0.2 ms when there is nothing to give back, 1-3 ms
// after a burst).
import type { Logger } from 'pino';
import { c } from '../datapath/ffi.js';

export interface MemoryTrimmer {
  stop(): void;
}

/** Every everyMs, hands the free pages of every malloc arena back to the kernel; 0 never does. */
export function startMemoryTrim(everyMs: number, logger: Logger): MemoryTrimmer {
  if (everyMs <= 0) return { stop: () => undefined };
  let inFlight = false;
  const timer = setInterval(() => {
    if (inFlight) return;
    inFlight = true;
    const rssBefore = logger.isLevelEnabled('debug') ? process.memoryUsage.rss() : 0;
    c.mallocTrim.async(0, (err: unknown) => {
      inFlight = false;
      if (err !== null && err !== undefined) logger.warn({ err }, 'malloc_trim failed');
      else if (rssBefore > 0) logger.debug({ rssBeforeMb: rssBefore / 2 ** 20, rssAfterMb: process.memoryUsage.rss() / 2 ** 20 }, 'free heap pages returned to the kernel');
    });
  }, everyMs);
  timer.unref();
  return { stop: () => clearInterval(timer) };
}
