// The daemon's process metrics: prom-client's default set, with an event-loop lag that reads the delay
// past its 100 ms sampling interval (an idle loop near 0, a stalled one its stall).
import { setTimeout as sleep } from 'node:timers/promises';
import { Registry, collectDefaultMetrics } from 'prom-client';
import t from 'tap';
import { collectProcessMetrics } from '../../src/telemetry/process-metrics.js';

const names = async (r: Registry): Promise<string[]> => (await r.getMetricsAsJSON()).map((m) => m.name).sort();
const value = async (r: Registry, name: string): Promise<number> => (await r.getSingleMetric(name)?.get())?.values[0]?.value ?? NaN;

t.test('the same metrics as prom-client collectDefaultMetrics', async (t) => {
  const theirs = new Registry();
  collectDefaultMetrics({ register: theirs });
  const ours = new Registry();
  collectProcessMetrics(ours);
  t.same(await names(ours), await names(theirs));
});

t.test('the lag is the delay past the sampling interval: near 0 idle, the stall when the loop stalls', async (t) => {
  const r = new Registry();
  collectProcessMetrics(r);
  await sleep(450);
  await r.metrics();
  t.ok((await value(r, 'nodejs_eventloop_lag_p50_seconds')) < 0.05, 'an idle loop does not read as the 100 ms interval');
  await sleep(250); // a sample after the scrape's reset: the first one only starts the next interval
  const until = Date.now() + 300;
  while (Date.now() < until); // the loop stalls for 300 ms
  await sleep(250);
  await r.metrics();
  const max = await value(r, 'nodejs_eventloop_lag_max_seconds');
  t.ok(max > 0.15 && max < 1, `a 300 ms stall reads as about 0.2 s past the interval (read ${max})`);
});
