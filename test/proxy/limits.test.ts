// The connection limiter's decisions, without sockets.
import t from 'tap';
import { ConnectionLimiter } from '../../src/proxy/limits.js';

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
