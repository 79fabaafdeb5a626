// Byte copying between real sockets: half-close is carried, a failure on one side resets the other.
import type { AddressInfo } from 'node:net';
import tls from 'node:tls';
import t from 'tap';
import { tlsCredentials } from '../../src/hbone/tls.js';
import { CertificateAuthority } from '../../src/identity/ca.js';
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

t.test('a TLS socket on one side is closed, not reset, when the other fails (its handle is not TCP)', async (t) => {
  const ca = await CertificateAuthority.create('cluster.local');
  const creds = tlsCredentials(await ca.issue('spiffe://cluster.local/ns/a/sa/b'));
  const server = tls.createServer({ ...creds, minVersion: 'TLSv1.3' });
  await new Promise<void>((r) => server.listen(0, '127.211.0.1', r));
  t.teardown(() => server.close());
  const serverSide = new Promise<tls.TLSSocket>((r) => server.once('secureConnection', r));
  const tlsClient = tls.connect({ host: '127.211.0.1', port: (server.address() as AddressInfo).port, ca: creds.ca, checkServerIdentity: () => undefined });
  await new Promise((r) => tlsClient.once('secureConnect', r));
  const tlsPeer = await serverSide;
  tlsPeer.on('error', () => undefined);
  const peerClosed = new Promise((r) => tlsPeer.once('close', r));
  const [plain, plainPeer] = await socketPair();
  const copied = copyBidirectional(plain, tlsClient);
  plainPeer.resetAndDestroy();
  await t.rejects(copied, 'the copy reports the failure');
  await peerClosed;
  t.ok(tlsClient.destroyed, 'the TLS side was torn down');
});
