// Byte copying between real sockets: half-close is carried, a failure on one side resets the other.
import net from 'node:net';
import t from 'tap';
import { copyBidirectional } from '../../src/proxy/copy.js';

/** A connected pair of real loopback sockets: [client end, server end]. */
async function socketPair(): Promise<[net.Socket, net.Socket]> {
  const server = net.createServer({ allowHalfOpen: true });
  await new Promise<void>((r) => server.listen(0, '127.211.0.1', r));
  const accepted = new Promise<net.Socket>((r) => server.once('connection', r));
  const client = net.connect({ host: '127.211.0.1', port: (server.address() as net.AddressInfo).port, allowHalfOpen: true });
  const peer = await accepted;
  server.close();
  await new Promise((r) => client.once('connect', r));
  return [client, peer];
}

t.test('half-close in one direction keeps the other open; counts are exact', async (t) => {
  const [client, proxyIn] = await socketPair();
  const [proxyOut, server] = await socketPair();
  const copied = copyBidirectional(proxyIn, proxyOut);
  server.on('data', () => undefined);
  server.once('end', () => setTimeout(() => server.end('reply after your FIN'), 50));
  client.end('request');
  const reply = await new Promise<string>((resolve) => {
    let text = '';
    client.on('data', (c: Buffer) => (text += String(c)));
    client.on('end', () => resolve(text));
  });
  t.equal(reply, 'reply after your FIN');
  t.same(await copied, { aToB: 7, bToA: 20 });
});

t.test('a reset on one side resets the other instead of ending it cleanly', async (t) => {
  const [client, proxyIn] = await socketPair();
  const [proxyOut, server] = await socketPair();
  const copied = copyBidirectional(proxyIn, proxyOut);
  const clientError = new Promise<string>((resolve) => client.once('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message)));
  server.resetAndDestroy();
  await t.rejects(copied);
  t.equal(await clientError, 'ECONNRESET');
});
