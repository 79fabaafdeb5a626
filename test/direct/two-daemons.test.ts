// Two daemons on loopback carrying SOCKS5-originated connections through HBONE.
import { createHash, randomBytes } from 'node:crypto';
import net from 'node:net';
import t from 'tap';
import { exchange, podIp, socksConnect, startEcho, startMesh, vip } from '../helpers/loopback.js';

const plan = { net: 205 };
const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

t.test('two daemons carry TCP over mTLS HBONE', async (t) => {
  const logs: Record<string, unknown>[] = [];
  const mesh = await startMesh(plan, { logSink: (l) => logs.push(l) });
  t.teardown(() => mesh.close());
  const echoA = await startEcho(podIp(plan, 2, 1));
  const echoB = await startEcho(podIp(plan, 2, 2));
  const local = await startEcho(podIp(plan, 1, 2));
  const plain = await startEcho(podIp(plan, 2, 3));
  t.teardown(() => Promise.all([echoA.close(), echoB.close(), local.close(), plain.close()]));
  const client = podIp(plan, 1, 1);

  t.test('64 MiB each way arrive byte-exact (SHA-256)', async (t) => {
    const data = randomBytes(64 * 1024 * 1024);
    const s = await socksConnect(mesh.node1, client, podIp(plan, 2, 1), 8080);
    const back = await exchange(s, data);
    t.equal(back.length, data.length);
    t.equal(sha(back), sha(data));
  });

  t.test('payloads at buffer boundaries arrive exact both ways, and both daemons count every byte', async (t) => {
    for (const size of [1, 16 * 1024 - 1, 16 * 1024, 16 * 1024 + 1, 64 * 1024 + 1, 1024 * 1024, 1024 * 1024 + 1]) {
      const data = randomBytes(size);
      const from = logs.length;
      const s = await socksConnect(mesh.node1, client, podIp(plan, 2, 1), 8080);
      const port = s.localPort;
      const back = await exchange(s, data);
      t.equal(sha(back), sha(data), `${size} bytes there and back`);
      // Both ends log when the connection ends, just after the client saw it end.
      const ended = async (direction: string): Promise<Record<string, unknown> | undefined> => {
        for (let i = 0; i < 100; i++) {
          const line = logs.slice(from).find((l) => l['msg'] === 'connection complete' && l['direction'] === direction && (direction === 'inbound' || l['src.addr'] === `${client}:${port}`));
          if (line !== undefined) return line;
          await new Promise((r) => setTimeout(r, 20));
        }
        return undefined;
      };
      t.match(await ended('outbound'), { bytes_sent: size, bytes_recv: size }, `${size}: the client's daemon counted it`);
      t.match(await ended('inbound'), { bytes_sent: size, bytes_recv: size }, `${size}: the server's daemon counted it`);
    }
  });

  t.test('the destination pod sees the client pod IP', async (t) => {
    echoA.peers.length = 0;
    const s = await socksConnect(mesh.node1, client, podIp(plan, 2, 1), 8080);
    await exchange(s, Buffer.from('who am i'));
    t.same(echoA.peers, [client]);
  });

  t.test('200 concurrent connections all complete, sharing pooled HBONE connections', async (t) => {
    const results = await Promise.all(
      Array.from({ length: 200 }, async (_, i) => {
        const payload = Buffer.from(`conn-${i}-`.repeat(100));
        const s = await socksConnect(mesh.node1, client, podIp(plan, 2, 1), 8080);
        return (await exchange(s, payload)).equals(payload);
      }),
    );
    t.equal(results.filter(Boolean).length, 200);
    t.ok(mesh.node1.pool.stats.connections <= 4, `pool used ${mesh.node1.pool.stats.connections} connections`);
  });

  t.test('half-close: the client FIN does not cut the reply, and the server FIN does not cut the request', async (t) => {
    // A server that answers only after the client has finished sending.
    const server = net.createServer({ allowHalfOpen: true }, (s) => {
      let n = 0;
      s.on('data', (c: Buffer) => (n += c.length));
      s.on('end', () => setTimeout(() => s.end(`got ${n} bytes after your FIN`), 100));
    });
    await new Promise<void>((r) => server.listen(9090, podIp(plan, 2, 2), r));
    t.teardown(() => server.close());
    const s = await socksConnect(mesh.node1, client, podIp(plan, 2, 2), 9090);
    t.equal(String(await exchange(s, Buffer.alloc(5000, 1))), 'got 5000 bytes after your FIN');

    // A server that says everything, ends, and keeps reading.
    let received = 0;
    const done = new Promise<number>((resolve) => {
      const early = net.createServer({ allowHalfOpen: true }, (s2) => {
        s2.end('hello, I am done talking');
        s2.on('data', (c: Buffer) => (received += c.length));
        s2.on('end', () => resolve(received));
      });
      early.listen(9091, podIp(plan, 2, 2));
      t.teardown(() => early.close());
    });
    const s2 = await socksConnect(mesh.node1, client, podIp(plan, 2, 2), 9091);
    const greeting = await new Promise<string>((r) => {
      let text = '';
      s2.on('data', (c: Buffer) => (text += String(c)));
      s2.on('end', () => r(text));
    });
    t.equal(greeting, 'hello, I am done talking');
    s2.end(Buffer.alloc(3000, 2));
    t.equal(await done, 3000, 'client kept sending after the server FIN');
  });

  t.test('a service VIP spreads over its endpoints', async (t) => {
    echoA.peers.length = 0;
    echoB.peers.length = 0;
    for (let i = 0; i < 40; i++) {
      const s = await socksConnect(mesh.node1, client, vip(plan), 80);
      await exchange(s, Buffer.from('x'));
    }
    t.ok(echoA.peers.length > 5 && echoB.peers.length > 5, `a=${echoA.peers.length} b=${echoB.peers.length}`);
    t.equal(echoA.peers.length + echoB.peers.length, 40);
  });

  t.test('same-node destination is handed over in-process, source IP kept', async (t) => {
    local.peers.length = 0;
    const before = mesh.node1.pool.stats.connections;
    const s = await socksConnect(mesh.node1, client, podIp(plan, 1, 2), 8080);
    t.equal(String(await exchange(s, Buffer.from('neighbour'))), 'neighbour');
    t.same(local.peers, [client]);
    t.equal(mesh.node1.pool.stats.connections, before, 'no HBONE connection for a local pod');
  });

  t.test('non-mesh destination gets plain TCP with the client IP', async (t) => {
    plain.peers.length = 0;
    const s = await socksConnect(mesh.node1, client, podIp(plan, 2, 3), 8080);
    t.equal(String(await exchange(s, Buffer.from('plain'))), 'plain');
    t.same(plain.peers, [client]);
  });

  t.test('SOCKS5 refuses sources that are not local captured workloads', async (t) => {
    const refusedFrom = (ip: string): Record<string, unknown> | undefined =>
      logs.filter((l) => l['msg'] === 'connection failed' && String(l['src.addr']).startsWith(`${ip}:`)).at(-1);
    await t.rejects(socksConnect(mesh.node1, '127.0.0.1', podIp(plan, 2, 1), 8080), /NotAllowed/, 'an address that is no pod');
    t.match(refusedFrom('127.0.0.1'), { response_flags: 'UNKNOWN_SOURCE', node: 'node-1' });
    await t.rejects(socksConnect(mesh.node1, podIp(plan, 2, 1), podIp(plan, 2, 2), 8080), /NotAllowed/, 'a pod of another node');
    t.match(refusedFrom(podIp(plan, 2, 1)), { response_flags: 'UNKNOWN_SOURCE', node: 'node-1' });
    const s = await socksConnect(mesh.node1, client, podIp(plan, 2, 1), 8080);
    t.equal(String(await exchange(s, Buffer.from('me'))), 'me', 'the same request from the local pod is carried');
  });
});
