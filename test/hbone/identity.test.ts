import { join } from 'node:path';
import t, { type Test } from 'tap';
import type { AuthzRequest } from '../../src/authz/hook.js';
import { DEFAULT_TIMEOUTS } from '../../src/hbone/constants.js';
import { HbonePool } from '../../src/hbone/pool.js';
import { CertificateAuthority } from '../../src/identity/ca.js';
import { CertManager } from '../../src/identity/cert-manager.js';
import { EmbeddedCaSource } from '../../src/identity/source.js';
import { PlainSocketFactory } from '../../src/proxy/sockets.js';
import { exchange, podIp, quietLogger, socksConnect, startEcho, startMesh } from '../helpers/loopback.js';
import { rawHbone, type RawHboneResult } from '../helpers/raw-hbone.js';

const plan = { net: 204 };
const CLIENT = 'spiffe://cluster.local/ns/app/sa/client';
const ECHO = 'spiffe://cluster.local/ns/app/sa/echo';

t.test('HBONE identities are checked both ways', async (t) => {
  const seen: AuthzRequest[] = [];
  const logs: Record<string, unknown>[] = [];
  const mesh = await startMesh(plan, {
    deps: { authorizer: { authorize: (r) => (seen.push(r), { allow: true, policy: undefined, reason: 'test' }) } },
    logSink: (l) => logs.push(l),
  });
  /** The reason node-2 logged for the last refused handshake or peer, once it has. */
  const refusal = async (msg: string): Promise<Record<string, unknown> | undefined> => {
    for (let i = 0; i < 100 && !logs.some((l) => l['node'] === 'node-2' && l['msg'] === msg); i++) await new Promise((r) => setTimeout(r, 20));
    const line = logs.filter((l) => l['node'] === 'node-2' && l['msg'] === msg).at(-1);
    logs.length = 0;
    return line;
  };
  const refusedBeforeHttp = (t: Test, r: RawHboneResult): void => {
    t.equal(r.status, undefined, 'no HTTP response');
    t.not(r.error, 'timeout', `the connection was closed by the server (${r.error ?? ''}), not left hanging`);
  };
  t.teardown(() => mesh.close());
  const echo = await startEcho(podIp(plan, 2, 1));
  t.teardown(() => echo.close());
  const ca = await CertificateAuthority.load(join(mesh.dir, 'ca'));
  const target = podIp(plan, 2, 1);
  const good = await ca.issue(CLIENT);

  t.test('the server sees the client workload identity', async (t) => {
    const s = await socksConnect(mesh.node1, podIp(plan, 1, 1), target, 8080);
    t.equal(String(await exchange(s, Buffer.from('ping'))), 'ping');
    t.equal(seen.at(-1)?.srcIdentity, CLIENT);
    t.equal(seen.at(-1)?.src.ip, podIp(plan, 1, 1), 'outer connection comes from the client pod IP');
  });

  t.test('the server presents the destination workload identity', async (t) => {
    const r = await rawHbone({ ip: target, ca: ca.rootPem, cert: good.chainPem.join(''), key: good.keyPem, authority: `${target}:8080` });
    t.equal(r.status, 200);
    t.equal(r.serverSan, `URI:${ECHO}`);
  });

  t.test('the client refuses a server whose SAN is not the expected one', async (t) => {
    const certs = new CertManager(new EmbeddedCaSource(ca, 600_000), quietLogger());
    const sockets = new PlainSocketFactory();
    const pool = new HbonePool({ certs, dial: (d, s, sig) => sockets.connect(d, s, sig), logger: quietLogger(), timeouts: DEFAULT_TIMEOUTS });
    t.teardown(() => {
      pool.destroy();
      certs.close();
    });
    await t.rejects(
      pool.connect({
        key: { srcIdentity: CLIENT, dstIdentities: ['spiffe://cluster.local/ns/app/sa/payments'], nextHop: { ip: target, port: 15008 }, srcIp: undefined },
        authority: `${target}:8080`,
        headers: {},
      }),
      { code: 'HBONE_IDENTITY_MISMATCH', message: /presented spiffe:\/\/cluster\.local\/ns\/app\/sa\/echo, expected spiffe:\/\/cluster\.local\/ns\/app\/sa\/payments/ },
    );
  });

  t.test('the server refuses a client certificate from another CA', async (t) => {
    const other = await CertificateAuthority.create('cluster.local');
    const foreign = await other.issue(CLIENT);
    logs.length = 0;
    refusedBeforeHttp(t, await rawHbone({ ip: target, ca: ca.rootPem, cert: foreign.chainPem.join(''), key: foreign.keyPem, authority: `${target}:8080` }));
    t.match(await refusal('hbone tls handshake failed'), { err: 'UNABLE_TO_VERIFY_LEAF_SIGNATURE' }, 'because its issuer is unknown');
  });

  t.test('the server refuses an expired client certificate', async (t) => {
    const expired = await ca.issue(CLIENT, { notBefore: new Date(Date.now() - 7200_000), notAfter: new Date(Date.now() - 3600_000) });
    logs.length = 0;
    refusedBeforeHttp(t, await rawHbone({ ip: target, ca: ca.rootPem, cert: expired.chainPem.join(''), key: expired.keyPem, authority: `${target}:8080` }));
    t.match(await refusal('hbone tls handshake failed'), { err: 'CERT_HAS_EXPIRED' }, 'because it has expired');
  });

  t.test('the server refuses a client without a certificate', async (t) => {
    const r = await rawHbone({ ip: target, ca: ca.rootPem, authority: `${target}:8080` });
    refusedBeforeHttp(t, r);
    t.match(r.error, /certificate required/, 'the TLS alert says a certificate is required');
  });

  t.test('the server refuses a certificate from our CA with no SPIFFE SAN (a DNS name only)', async (t) => {
    const noSpiffe = await ca.issueServing(['client.example']);
    logs.length = 0;
    refusedBeforeHttp(t, await rawHbone({ ip: target, ca: ca.rootPem, cert: noSpiffe.chainPem.join(''), key: noSpiffe.keyPem, authority: `${target}:8080` }));
    t.ok(await refusal('hbone peer has no SPIFFE identity in our trust domain'), 'because it names no workload');
  });

  t.test('the server refuses a certificate of another trust domain signed by the same root', async (t) => {
    const stranger = await ca.issue('spiffe://evil.example/ns/app/sa/client');
    logs.length = 0;
    refusedBeforeHttp(t, await rawHbone({ ip: target, ca: ca.rootPem, cert: stranger.chainPem.join(''), key: stranger.keyPem, authority: `${target}:8080` }));
    t.match(await refusal('hbone peer has no SPIFFE identity in our trust domain'), { peer: 'spiffe://evil.example/ns/app/sa/client' }, 'because of its trust domain');
  });

  t.test('the same client with a good certificate is accepted (the refusals above are about the certificate)', async (t) => {
    t.equal((await rawHbone({ ip: target, ca: ca.rootPem, cert: good.chainPem.join(''), key: good.keyPem, authority: `${target}:8080` })).status, 200);
  });

  t.test('request errors: 400 for non-CONNECT and for a foreign authority, 503 when the target refuses', async (t) => {
    const creds = { ip: target, ca: ca.rootPem, cert: good.chainPem.join(''), key: good.keyPem };
    t.equal((await rawHbone({ ...creds, method: 'GET', authority: `${target}:8080` })).status, 400, 'GET');
    t.equal((await rawHbone({ ...creds, authority: `${podIp(plan, 2, 2)}:8080` })).status, 400, 'authority ip is not the addressed ip');
    t.equal((await rawHbone({ ...creds, authority: 'echo.app.svc:8080' })).status, 400, 'host names are not targets');
    t.equal((await rawHbone({ ...creds, authority: `${target}:9` })).status, 503, 'nothing listens on the target port');
  });
});
