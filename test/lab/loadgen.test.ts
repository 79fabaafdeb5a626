// The benchmark's load generator, on loopback: fixed rate is held, responses are parsed, errors counted.
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
  t.equal(paced['errors'], 0);
  t.ok(Math.abs((paced['requests'] ?? 0) - 400) <= 4, `about 400 requests at 200 qps for 2 s (${paced['requests']})`);
  t.ok((paced['p50'] ?? NaN) <= (paced['p99'] ?? NaN), 'percentiles are ordered');
  const flat = JSON.parse((await run(process.execPath, [LOADGEN, 'load', '127.0.0.1', '28081', '0', '4', '1'])).stdout) as Record<string, number>;
  t.ok((flat['requests'] ?? 0) > 400, `unpaced runs faster than the paced rate (${flat['requests']})`);
  const refused = JSON.parse((await run(process.execPath, [LOADGEN, 'load', '127.0.0.1', '28089', '50', '2', '1'])).stdout) as Record<string, number>;
  t.ok((refused['errors'] ?? 0) > 0, 'connection failures are counted as errors');
});
