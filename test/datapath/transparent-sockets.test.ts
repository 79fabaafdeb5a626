// The sockets eBPF capture uses, made through libc: an upstream connection leaves from the client's own
// address (IPv4 and IPv6), and a transparent listener accepts. On loopback; IP_TRANSPARENT needs root.
import net from 'node:net';
import t from 'tap';
import { TransparentSocketFactory } from '../../src/datapath/transparent-sockets.js';

const skip = process.getuid?.() !== 0 ? 'needs root for IP_TRANSPARENT (CI runs as root)' : undefined;

/** A plain listener on host that reports each peer's address and closes. */
async function peerReporter(host: string): Promise<{ port: number; peers: string[]; close: () => Promise<void> }> {
  const peers: string[] = [];
  const server = net.createServer((s) => {
    peers.push(`${s.remoteAddress ?? '?'}`);
    s.end('hi');
  });
  await new Promise<void>((r) => server.listen(0, host, r));
  return { port: (server.address() as net.AddressInfo).port, peers, close: () => new Promise((r) => server.close(() => r())) };
}

async function readAll(s: net.Socket): Promise<string> {
  let text = '';
  for await (const chunk of s) text += String(chunk);
  return text;
}

t.test('upstream sockets leave from the address asked for', { skip: skip ?? false }, async (t) => {
  const f = new TransparentSocketFactory();
  const v4 = await peerReporter('127.0.0.1');
  t.teardown(v4.close);
  // Many in a row: the libc calls share scratch buffers, so one connection's address must not leak into the next.
  for (const src of ['127.0.0.5', '127.9.8.7', '127.0.0.5']) {
    const s = await f.connect({ ip: '127.0.0.1', port: v4.port }, src, new AbortController().signal);
    t.equal(await readAll(s), 'hi');
  }
  t.same(v4.peers, ['127.0.0.5', '127.9.8.7', '127.0.0.5'], 'the server saw each source address');

  const v6 = await peerReporter('::1').catch(() => undefined);
  if (v6 !== undefined) {
    t.teardown(v6.close);
    const s = await f.connect({ ip: '::1', port: v6.port }, '::1', new AbortController().signal);
    t.equal(await readAll(s), 'hi');
    t.same(v6.peers, ['::1'], 'IPv6 too');
  }
  await t.rejects(f.connect({ ip: '127.0.0.1', port: v4.port }, '::1', new AbortController().signal), { code: 'PROXY_UPSTREAM_CONNECT', message: /different IP families/ }, 'a source of the other family is refused, not replaced');
  await t.rejects(f.connect({ ip: '127.0.0.1', port: 1 }, '127.0.0.5', new AbortController().signal), { code: 'PROXY_UPSTREAM_CONNECT' }, 'a refused connect is an upstream connect error');
});

t.test('a transparent listener accepts on its address', { skip: skip ?? false }, async (t) => {
  const f = new TransparentSocketFactory();
  const accepted: string[] = [];
  const server = await f.listen({ host: '127.0.0.1', port: 0 }, (s) => {
    accepted.push(s.localAddress ?? '?');
    s.end('ok');
  });
  t.teardown(() => new Promise<void>((r) => server.close(() => r())));
  const port = (server.address() as net.AddressInfo).port;
  const c = net.connect(port, '127.0.0.1');
  t.equal(await readAll(c), 'ok');
  t.same(accepted, ['127.0.0.1']);
});
