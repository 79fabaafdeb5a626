// The connection limiter's decisions, without sockets.
import t from 'tap';
import { ConnectionLimiter, forgetWorkerConnections } from '../../src/proxy/limits.js';

t.test('per source and in all; a released slot is free again; release is idempotent', async (t) => {
  const l = new ConnectionLimiter({ maxConnections: 3, maxConnectionsPerSource: 2 });
  const a1 = l.admit('10.0.0.1');
  const a2 = l.admit('10.0.0.1');
  t.match([a1, a2], [{ admitted: true }, { admitted: true }]);
  t.match(l.admit('10.0.0.1'), { admitted: false, reason: /from 10\.0\.0\.1, its limit \(--max-connections-per-source 2\)/ }, 'the source is at its limit');
  const b1 = l.admit('10.0.0.2');
  t.match(b1, { admitted: true }, 'another source still gets one');
  t.match(l.admit('10.0.0.3'), { admitted: false, reason: /the daemon's limit \(--max-connections 3\)/ }, 'the daemon is at its limit');
  if (a1.admitted) {
    a1.release();
    a1.release();
  }
  t.equal(l.open, 2, 'released once');
  t.match(l.admit('10.0.0.3'), { admitted: true }, 'the freed slot is taken');
});

t.test('0 means no limit', async (t) => {
  const l = new ConnectionLimiter({ maxConnections: 0, maxConnectionsPerSource: 0 });
  for (let i = 0; i < 1000; i++) l.admit('10.0.0.1');
  t.equal(l.open, 1000);
});

t.test('worker threads share --max-connections; a dead worker\'s share is given back', async (t) => {
  const buffer = new SharedArrayBuffer(4 * 3);
  const limits = { maxConnections: 3, maxConnectionsPerSource: 0 };
  const w0 = new ConnectionLimiter(limits, { buffer, worker: 0 });
  const w1 = new ConnectionLimiter(limits, { buffer, worker: 1 });
  t.match(w0.admit('10.0.0.1'), { admitted: true });
  t.match(w0.admit('10.0.0.2'), { admitted: true });
  const last = w1.admit('10.0.0.3');
  t.match(last, { admitted: true }, 'the third connection, on the other worker');
  t.match(w1.admit('10.0.0.4'), { admitted: false, reason: /3 connections open, the daemon's limit/ }, 'the limit is the daemon\'s, not each worker\'s');
  t.match(w0.admit('10.0.0.4'), { admitted: false }, 'on either worker');
  if (last.admitted) last.release();
  t.match(w0.admit('10.0.0.4'), { admitted: true }, 'a slot freed on one worker is taken on the other');
  // Worker 0 dies holding three: they are gone from the count, and worker 1 may use them.
  forgetWorkerConnections(buffer, 0);
  for (let i = 0; i < 3; i++) t.match(w1.admit(`10.0.1.${i}`), { admitted: true }, `slot ${i + 1} after worker 0 died`);
  t.match(w1.admit('10.0.2.1'), { admitted: false });
});
