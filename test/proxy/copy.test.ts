// Byte copying between real sockets: half-close is carried, a failure on one side resets the other.
import t from 'tap';
import { copyBidirectional } from '../../src/proxy/copy.js';
import { socketPair } from '../helpers/socket-pair.js';

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
