import type { Logger } from 'pino';

// The V8 flags the daemon and the waypoint run with. On a node the daemon shares with its pods, V8's
// helper threads for parallel and concurrent GC compete with the workloads for cores, and each socket
// read and HTTP/2 chunk is a new Buffer: with these flags the collection runs on the thread that
// allocates, and a 32 MB semi-space lets the buffers die young instead of being promoted and collected by
// full GCs. Measured by bench:compare (bench/results/2026-12-01/compare-gc-flags.txt, medians of 3
// interleaved rounds): one iperf3 stream 2.95 -> 4.45 Gbit/s, CPU per GiB 4.16 -> 2.61 s, p99 at 1000 qps
// 0.63 -> 0.37 ms, CPU per new connection -6%. The image, the lab and the tests start node with them.
export const DAEMON_NODE_FLAGS: readonly string[] = ['--single-threaded-gc', '--max-semi-space-size=32'];

/** The flags of DAEMON_NODE_FLAGS this process was started without (on its command line or in NODE_OPTIONS). */
export function missingNodeFlags(execArgv: readonly string[], nodeOptions: string | undefined): string[] {
  const given = new Set([...execArgv, ...(nodeOptions ?? '').split(/\s+/)].map((f) => f.replace(/_/g, '-')));
  return DAEMON_NODE_FLAGS.filter((f) => !given.has(f));
}

/** Says once, at start, which of the flags this process lacks and what that costs. */
export function warnOfMissingNodeFlags(logger: Logger): void {
  const missing = missingNodeFlags(process.execArgv, process.env['NODE_OPTIONS']);
  if (missing.length > 0) {
    logger.warn({ missing }, 'node was started without the flags the daemon is measured with (37% less CPU per GiB with them): start it as the image does, node ' + DAEMON_NODE_FLAGS.join(' '));
  }
}

/** For config_dump: how node runs this process. */
export function runtimeFacts(): { node: string; execArgv: string[]; missingFlags: string[] } {
  return { node: process.version, execArgv: [...process.execArgv], missingFlags: missingNodeFlags(process.execArgv, process.env['NODE_OPTIONS']) };
}
