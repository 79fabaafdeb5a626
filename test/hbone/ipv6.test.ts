// HBONE between IPv6 addresses: the pool dials [::1]:port, :authority is written [v6]:port (RFC 3986),
// and the server reads it back in canonical form and checks it against the address it was sent to.
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import t from 'tap';
import { DEFAULT_TIMEOUTS } from '../../src/hbone/constants.js';
import { formatAddress } from '../../src/hbone/headers.js';
import { HbonePool } from '../../src/hbone/pool.js';
import { HboneServer, type HboneRequest } from '../../src/hbone/server.js';
import { CertificateAuthority } from '../../src/identity/ca.js';
import { CertManager } from '../../src/identity/cert-manager.js';
import { EmbeddedCaSource } from '../../src/identity/source.js';
import { PlainSocketFactory } from '../../src/proxy/sockets.js';
import { quietLogger } from '../helpers/loopback.js';

const CLIENT = 'spiffe://cluster.local/ns/app/sa/client';
const SERVER = 'spiffe://cluster.local/ns/app/sa/echo';

/** Whether this machine can listen on ::1 at all (a host with IPv6 disabled cannot). */
async function ipv6Loopback(): Promise<boolean> {
  const s = net.createServer();
  return new Promise((resolve) => {
    s.once('error', () => resolve(false));
    s.listen(0, '::1', () => s.close(() => resolve(true)));
  });
}

t.test('HBONE over IPv6 loopback', { skip: (await ipv6Loopback()) ? false : 'this machine cannot listen on ::1 (IPv6 disabled)' }, async (t) => {
  const ca = await CertificateAuthority.create('cluster.local');
  const certs = new CertManager(new EmbeddedCaSource(ca, 600_000), quietLogger());
  const requests: HboneRequest[] = [];
  const hbone = new HboneServer({
    certs,
    trustDomain: 'cluster.local',
    logger: quietLogger(),
    timeouts: DEFAULT_TIMEOUTS,
    identityFor: (ip) => (ip === '::1' ? SERVER : undefined),
    onRequest: (req) => {
      requests.push(req);
      req.stream.respond({ ':status': 200 });
      req.stream.end('hello over v6');
    },
  });
  const listener = net.createServer({ pauseOnConnect: true }, (s) => void hbone.accept(s));
  await new Promise<void>((r) => listener.listen(0, '::1', r));
  const port = (listener.address() as AddressInfo).port;
  const sockets = new PlainSocketFactory();
  const pool = new HbonePool({ certs, dial: (d, s, sig) => sockets.connect(d, s, sig), logger: quietLogger(), timeouts: DEFAULT_TIMEOUTS });
  t.teardown(async () => {
    pool.destroy();
    hbone.destroy();
    certs.close();
    await new Promise((r) => listener.close(r));
  });
  const open = async (authority: string): Promise<string> => {
    const stream = await pool.connect({ key: { srcIdentity: CLIENT, dstIdentities: [SERVER], nextHop: { ip: '::1', port }, srcIp: undefined }, authority, headers: {} });
    let text = '';
    for await (const chunk of stream) text += String(chunk);
    return text;
  };

  t.equal(formatAddress({ ip: '::1', port: 8080 }), '[::1]:8080');
  t.equal(await open(formatAddress({ ip: '::1', port: 8080 })), 'hello over v6', 'CONNECT [::1]:8080 answered');
  t.match(requests.at(-1), { dst: { ip: '::1', port: 8080 }, src: { ip: '::1' }, peerIdentity: CLIENT, localIdentity: SERVER });
  await open('[0:0:0:0:0:0:0:1]:9000');
  t.match(requests.at(-1)?.dst, { ip: '::1', port: 9000 }, 'another spelling of the same address is read in canonical form and accepted');
  const before = requests.length;
  await t.rejects(open('[::2]:8080'), { code: 'HBONE_CONNECT_STATUS', status: 400 }, 'an authority other than the addressed IPv6 address is refused');
  await t.rejects(open('::1:8080'), { code: 'HBONE_CONNECT_STATUS', status: 400 }, 'an IPv6 authority without brackets is refused');
  t.equal(requests.length, before, 'neither reached the handler');
});
