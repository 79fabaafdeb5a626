import type { Logger } from 'pino';

// How node runs the daemon and the waypoint. On a node the daemon shares with its pods, V8's default of
// four helper threads for parallel and concurrent GC competed with the workloads for cores (one iperf3
// stream through the lab was 50% faster with none, --single-threaded-gc). But with none, every young
// collection also freed the backing stores of the Buffers it found dead (each socket read is one) on
// the main thread: 2-16 ms pauses every few seconds at 1000 requests/s, most of each pause
// (--trace-gc-nvp, scavenge.sweep_array_buffers). So: one helper thread, which sweeps (old-space pages
// and those backing stores) while the daemon runs; marking stays on the main thread (V8's and Oilpan's,
// incremental as before) and young collections are not split across threads. Against
// --single-threaded-gc (bench:compare, 5 rounds, compare-v8-pool-size.txt): p99 at 1000 qps -57%,
// new connections/s +13%, one stream +14%, RSS -5%. The image, the lab and the tests start node so.
export const DAEMON_NODE_FLAGS: readonly string[] = ['--v8-pool-size=1', '--no-concurrent-marking', '--no-cppheap-concurrent-marking', '--no-parallel-scavenge'];

/** The flags of DAEMON_NODE_FLAGS this process was started without (on its command line or in NODE_OPTIONS). */
export function missingNodeFlags(execArgv: readonly string[], nodeOptions: string | undefined): string[] {
  const given = new Set([...execArgv, ...(nodeOptions ?? '').split(/\s+/)].map((f) => f.replace(/_/g, '-')));
  return DAEMON_NODE_FLAGS.filter((f) => !given.has(f));
}

/** Says once, at start, which of the flags this process lacks and what that costs. */
export function warnOfMissingNodeFlags(logger: Logger): void {
  const missing = missingNodeFlags(process.execArgv, process.env['NODE_OPTIONS']);
  if (missing.length > 0) {
    logger.warn({ missing }, 'node was started without the flags the daemon is measured with (bench/README.md: V8\'s default GC threads cost this node\'s pods cores, and its p99): start it as the image does, node ' + DAEMON_NODE_FLAGS.join(' '));
  }
}

/** For config_dump: how node runs this process. */
export function runtimeFacts(): { node: string; execArgv: string[]; missingFlags: string[] } {
  return { node: process.version, execArgv: [...process.execArgv], missingFlags: missingNodeFlags(process.execArgv, process.env['NODE_OPTIONS']) };
}
