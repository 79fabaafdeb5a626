import net from 'node:net';
import tls from 'node:tls';
import t from 'tap';
import { connectTls, secureContextFor } from '../../src/hbone/client-connection.js';
import { TLS_BASE, tlsCredentials } from '../../src/hbone/tls.js';
import { CertificateAuthority } from '../../src/identity/ca.js';

const CLIENT = 'spiffe://cluster.local/ns/app/sa/client';
const SERVER = 'spiffe://cluster.local/ns/app/sa/echo';

t.test('the HBONE client handshake: one context per SVID, the renewed SVID on the next connection', async (t) => {
  const ca = await CertificateAuthority.create('cluster.local');
  const serverSvid = await ca.issue(SERVER);
  const seenSerials: string[] = [];
  const server = tls.createServer({ ...TLS_BASE, ...tlsCredentials(serverSvid), requestCert: true, rejectUnauthorized: true }, (s) => {
    seenSerials.push(s.getPeerCertificate().serialNumber);
    s.end();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => server.close());
  const port = (server.address() as net.AddressInfo).port;
  const dial = async (svid: Awaited<ReturnType<typeof ca.issue>>, expected = SERVER): Promise<tls.TLSSocket> => {
    const raw = net.connect(port, '127.0.0.1');
    await new Promise((r) => raw.once('connect', r));
    return connectTls({ raw, svid, expected: new Set([expected]), peer: { ip: '127.0.0.1', port }, handshakeMs: 5000 });
  };
  const closed = (s: tls.TLSSocket): Promise<void> => new Promise((r) => (s.destroyed ? r() : s.once('close', () => r())));

  const first = await ca.issue(CLIENT);
  t.equal(secureContextFor(first), secureContextFor(first), 'the same SVID gives the same context');
  await closed(await dial(first));
  await closed(await dial(first));
  const renewed = await ca.issue(CLIENT);
  t.not(secureContextFor(renewed), secureContextFor(first), 'a renewed SVID gets its own context');
  await closed(await dial(renewed));
  const norm = (s: string): string => s.toUpperCase().replace(/^0+/, '');
  t.same(seenSerials.map(norm), [first.serial, first.serial, renewed.serial].map(norm), 'the server saw the first certificate twice, then the renewed one');

  await t.rejects(dial(first, 'spiffe://cluster.local/ns/app/sa/other'), { code: 'HBONE_IDENTITY_MISMATCH' }, 'a peer with another identity is refused');
});
