import type { Logger } from 'pino';

// The V8 flags the daemon and the waypoint run with. On a node the daemon shares with its pods, V8's
// helper threads for parallel and concurrent GC compete with the workloads for cores: with this flag the
// collection runs on the thread that allocates: one iperf3 stream through the lab was 50% faster with it
// (bench/README.md, "Where the time goes"). A 32 MB semi-space (--max-semi-space-size=32)
// was also passed until its cost showed: V8 grows the young generation to 2 x 32 MB in a burst of new
// connections and shrinks it only at a collection under low allocation, so an idle daemon kept it; without
// it the busier daemon's RSS after a burst is 15% lower, with one stream within this machine's noise
// (compare-semi-space.txt, compare-semi-space-2.txt). The image, the lab and the tests start node with it.
export const DAEMON_NODE_FLAGS: readonly string[] = ['--single-threaded-gc'];

/** The flags of DAEMON_NODE_FLAGS this process was started without (on its command line or in NODE_OPTIONS). */
export function missingNodeFlags(execArgv: readonly string[], nodeOptions: string | undefined): string[] {
  const given = new Set([...execArgv, ...(nodeOptions ?? '').split(/\s+/)].map((f) => f.replace(/_/g, '-')));
  return DAEMON_NODE_FLAGS.filter((f) => !given.has(f));
}

/** Says once, at start, which of the flags this process lacks and what that costs. */
export function warnOfMissingNodeFlags(logger: Logger): void {
  const missing = missingNodeFlags(process.execArgv, process.env['NODE_OPTIONS']);
  if (missing.length > 0) {
    logger.warn({ missing }, 'node was started without the flags the daemon is measured with (bench/README.md: a single-threaded GC carries 50% more bulk here): start it as the image does, node ' + DAEMON_NODE_FLAGS.join(' '));
  }
}

/** For config_dump: how node runs this process. */
export function runtimeFacts(): { node: string; execArgv: string[]; missingFlags: string[] } {
  return { node: process.version, execArgv: [...process.execArgv], missingFlags: missingNodeFlags(process.execArgv, process.env['NODE_OPTIONS']) };
}
