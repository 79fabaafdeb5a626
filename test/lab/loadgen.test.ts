// The fallback load generator, on loopback: it never exceeds its schedule, parses responses, counts errors.
// How fast it is belongs in bench/, not here.
import { execFile, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import t from 'tap';

const LOADGEN = fileURLToPath(new URL('../../src/lab/loadgen.js', import.meta.url));
const run = promisify(execFile);

t.test('fixed rate over keep-alive connections, then as fast as possible', async (t) => {
  const fixed = spawn(process.execPath, [LOADGEN, 'serve', '28081', '512'], { stdio: ['ignore', 'pipe', 'inherit'] });
  t.teardown(() => fixed.kill());
  await new Promise<void>((r) => fixed.stdout.once('data', () => r()));
  const paced = JSON.parse((await run(process.execPath, [LOADGEN, 'load', '127.0.0.1', '28081', '200', '4', '2'])).stdout) as Record<string, number>;
  t.equal(paced['errors'], 0, 'every response parsed as a 200');
  t.ok((paced['requests'] ?? 0) > 0, 'requests were answered');
  t.ok((paced['requests'] ?? Infinity) <= 400, `an open loop never sends more than it scheduled: 200 qps for 2 s (${paced['requests']})`);
  t.ok((paced['p50'] ?? NaN) <= (paced['p99'] ?? NaN) && (paced['p99'] ?? NaN) <= (paced['max'] ?? NaN), 'percentiles are ordered');
  const flat = JSON.parse((await run(process.execPath, [LOADGEN, 'load', '127.0.0.1', '28081', '0', '4', '1'])).stdout) as Record<string, number>;
  t.equal(flat['errors'], 0);
  t.ok((flat['requests'] ?? 0) > 0, 'unpaced: requests were answered');
  const refused = JSON.parse((await run(process.execPath, [LOADGEN, 'load', '127.0.0.1', '28089', '50', '2', '1'])).stdout) as Record<string, number>;
  t.ok((refused['errors'] ?? 0) > 0, 'connection failures are counted as errors');
  t.equal(refused['requests'], 0, 'and never as answered requests');
});
