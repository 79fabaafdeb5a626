// prom-client's default process metrics, with the event-loop lag sampled every 100 ms instead of its
// 10 ms. The 10 ms timer woke an idle daemon 100 times a second on every node (and cost 7 ms of CPU per
// 1000 requests under load, bench/README.md). prom-client's quantiles are the timer's whole interval, so a
// coarser timer would have moved every nodejs_eventloop_lag_* figure up by 90 ms; these report the delay
// past the interval, the lag itself (an idle loop reads about 0, as it read about 0.010 before).
import { createRequire } from 'node:module';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { Gauge, type Registry } from 'prom-client';

const require = createRequire(import.meta.url);

/** collectDefaultMetrics()'s list but its eventLoopLag (prom-client 15, lib/defaultMetrics.js). */
const PROM_CLIENT_DEFAULTS = [
  'processCpuTotal',
  'processStartTime',
  'osMemoryHeap',
  'processOpenFileDescriptors',
  'processMaxFileDescriptors',
  ...(typeof process.getActiveResourcesInfo === 'function' ? ['processResources'] : []),
  'processHandles',
  'processRequests',
  'heapSizeAndUsed',
  'heapSpacesSizeAndUsed',
  'version',
  'gc',
];

export const LAG_SAMPLE_MS = 100;

export function collectProcessMetrics(registry: Registry): void {
  for (const name of PROM_CLIENT_DEFAULTS) {
    const add = require(`prom-client/lib/metrics/${name}`) as (r: Registry, config: object) => void;
    add(registry, {});
  }
  eventLoopLag(registry);
}

function eventLoopLag(registry: Registry): void {
  const histogram = monitorEventLoopDelay({ resolution: LAG_SAMPLE_MS });
  histogram.enable();
  const pastInterval = (ns: number): number => (Number.isFinite(ns) ? Math.max(0, ns / 1e9 - LAG_SAMPLE_MS / 1000) : 0);
  const gauge = (name: string, help: string, aggregator: 'min' | 'max' | 'average'): Gauge => new Gauge({ name, help, registers: [registry], aggregator });
  const lag = new Gauge({
    name: 'nodejs_eventloop_lag_seconds',
    help: 'Lag of event loop in seconds.',
    registers: [registry],
    aggregator: 'average',
    // One collect for all of them, as prom-client's: the scrape's own wait for the loop (shown at the
    // next scrape), and the samples since the last scrape. Registered first, so that a scrape runs it
    // before it reads the others.
    collect() {
      const start = process.hrtime.bigint();
      setImmediate(() => lag.set(Number(process.hrtime.bigint() - start) / 1e9));
      if (histogram.count > 0) {
        min.set(pastInterval(histogram.min));
        max.set(pastInterval(histogram.max));
        mean.set(pastInterval(histogram.mean));
        stddev.set(histogram.stddev / 1e9);
        p50.set(pastInterval(histogram.percentile(50)));
        p90.set(pastInterval(histogram.percentile(90)));
        p99.set(pastInterval(histogram.percentile(99)));
      }
      histogram.reset();
    },
  });
  const min = gauge('nodejs_eventloop_lag_min_seconds', 'The minimum recorded event loop delay.', 'min');
  const max = gauge('nodejs_eventloop_lag_max_seconds', 'The maximum recorded event loop delay.', 'max');
  const mean = gauge('nodejs_eventloop_lag_mean_seconds', 'The mean of the recorded event loop delays.', 'average');
  const stddev = gauge('nodejs_eventloop_lag_stddev_seconds', 'The standard deviation of the recorded event loop delays.', 'average');
  const p50 = gauge('nodejs_eventloop_lag_p50_seconds', 'The 50th percentile of the recorded event loop delays.', 'average');
  const p90 = gauge('nodejs_eventloop_lag_p90_seconds', 'The 90th percentile of the recorded event loop delays.', 'average');
  const p99 = gauge('nodejs_eventloop_lag_p99_seconds', 'The 99th percentile of the recorded event loop delays.', 'average');
}
