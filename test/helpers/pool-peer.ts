// An HbonePool of the daemon's against a plain Node HTTP/2 server the test controls: the server listens on
// host, and everything (pool, certificates, the server's sessions) is torn down with the test.
import type http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import { DEFAULT_TIMEOUTS } from '../../src/hbone/constants.js';
import { HbonePool } from '../../src/hbone/pool.js';
import type { CertificateAuthority } from '../../src/identity/ca.js';
import { CertManager } from '../../src/identity/cert-manager.js';
import { EmbeddedCaSource } from '../../src/identity/source.js';
import { PlainSocketFactory } from '../../src/proxy/sockets.js';
import { quietLogger } from './loopback.js';

export interface PoolPeer {
  /** A CONNECT from client to the server's identity through the pool. */
  readonly connect: () => Promise<http2.ClientHttp2Stream>;
}

export async function poolAgainst(
  t: { teardown: (fn: () => Promise<void> | void) => void },
  o: { ca: CertificateAuthority; server: http2.Http2SecureServer; sessions: Set<http2.ServerHttp2Session>; host: string; client: string; serverIdentity: string },
): Promise<PoolPeer> {
  await new Promise<void>((r) => o.server.listen(0, o.host, r));
  const port = (o.server.address() as AddressInfo).port;
  const certs = new CertManager(new EmbeddedCaSource(o.ca, 600_000), quietLogger());
  const sockets = new PlainSocketFactory();
  const pool = new HbonePool({ certs, dial: (d, s, sig) => sockets.connect(d, s, sig), logger: quietLogger(), timeouts: DEFAULT_TIMEOUTS });
  t.teardown(async () => {
    pool.destroy();
    certs.close();
    for (const s of o.sessions) s.destroy();
    await new Promise((r) => o.server.close(r));
  });
  const key = { srcIdentity: o.client, dstIdentities: [o.serverIdentity], nextHop: { ip: o.host, port }, srcIp: undefined };
  return { connect: () => pool.connect({ key, authority: '10.0.0.1:8080', headers: {} }) };
}
