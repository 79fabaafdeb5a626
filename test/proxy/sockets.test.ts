// A listener's queue holds a burst of connections the daemon has not accepted yet (every pod of a node
// connects through one daemon): Node's default backlog of 511 overflowed, and a client whose last
// handshake ACK the full queue dropped, sending nothing after it, believed itself connected to a daemon
// that never saw it.
import { execFileSync } from 'node:child_process';
import net from 'node:net';
import t from 'tap';
import { TransparentSocketFactory } from '../../src/datapath/transparent-sockets.js';
import { PlainSocketFactory, type SocketFactory } from '../../src/proxy/sockets.js';

const BURST = 1200;

/**
 * Connects BURST clients before the event loop polls again (so none is accepted yet), then reads the queue.
 * Node makes each connect() call in a nextTick; the loopback handshakes complete inside those calls.
 */
async function queuedAfterBurst(port: number, clients: net.Socket[]): Promise<number> {
  for (let i = 0; i < BURST; i++) clients.push(net.connect(port, '127.0.0.1').on('error', () => undefined));
  await new Promise((r) => process.nextTick(r));
  // ss reports a listener's accept queue as Recv-Q.
  const line = execFileSync('ss', ['-Hltn', `sport = :${port}`], { encoding: 'utf8' }).trim();
  return Number(line.split(/\s+/)[1]);
}

const cases: { name: string; factory: () => SocketFactory; skip?: string }[] = [
  { name: 'plain', factory: () => new PlainSocketFactory() },
  { name: 'transparent', factory: () => new TransparentSocketFactory(), ...(process.getuid?.() !== 0 ? { skip: 'needs root for IP_TRANSPARENT (CI runs as root)' } : {}) },
];

for (const c of cases) {
  t.test(`a ${c.name} listener queues a burst of ${BURST} connections`, { skip: c.skip ?? false }, async (t) => {
    let accepted = 0;
    const server = await c.factory().listen({ host: '127.0.0.1', port: 0 }, (s) => {
      accepted += 1;
      s.destroy();
    });
    const clients: net.Socket[] = [];
    t.teardown(async () => {
      for (const s of clients) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    });
    const queued = await queuedAfterBurst((server.address() as net.AddressInfo).port, clients);
    t.equal(queued, BURST, 'every connection waits in the queue, none dropped');
    while (accepted < BURST) await new Promise((r) => setTimeout(r, 10));
    t.equal(accepted, BURST, 'and each is accepted');
  });
}
