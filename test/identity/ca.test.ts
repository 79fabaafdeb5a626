import { mkdtempSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import t from 'tap';
import { CertificateAuthority } from '../../src/identity/ca.js';
import { CertManager } from '../../src/identity/cert-manager.js';
import { x509 } from '../../src/identity/keys.js';
import type { CertificateSource } from '../../src/identity/source.js';
import { createCsr, uriSans, type Svid } from '../../src/identity/svid.js';

const ID = 'spiffe://cluster.local/ns/app/sa/web';

t.test('workload SVID: P-256, URI SAN only, empty subject, 24 h by default, chains to the root', async (t) => {
  const ca = await CertificateAuthority.create('cluster.local');
  const svid = await ca.issue(ID);
  const cert = new x509.X509Certificate(svid.certPem);
  t.same(uriSans(cert), [ID]);
  t.equal(cert.subject, '');
  t.equal((cert.publicKey.algorithm as EcKeyAlgorithm).namedCurve, 'P-256');
  const life = cert.notAfter.getTime() - Date.now();
  t.ok(life > 23.9 * 3600_000 && life <= 24 * 3600_000, `lifetime ${life} ms`);
  t.ok(await cert.verify({ publicKey: new x509.X509Certificate(ca.rootPem).publicKey, signatureOnly: true }));
});

t.test('a CSR for another identity is refused', async (t) => {
  const ca = await CertificateAuthority.create('cluster.local');
  const req = await createCsr('spiffe://cluster.local/ns/other/sa/evil');
  await t.rejects(ca.sign(req.csrPem, ID), { code: 'CA_CSR_INVALID' });
});

t.test('root is written in Istio cacerts layout with a 0600 key, and loaded back', async (t) => {
  const dir = join(mkdtempSync(join(tmpdir(), 'ztunnel-ts-ca-')), 'ca');
  const first = await CertificateAuthority.loadOrInit(dir, 'cluster.local');
  for (const f of ['ca-cert.pem', 'ca-key.pem', 'root-cert.pem', 'cert-chain.pem']) t.ok(statSync(join(dir, f)).isFile(), f);
  t.equal(statSync(join(dir, 'ca-key.pem')).mode & 0o777, 0o600);
  const again = await CertificateAuthority.loadOrInit(dir, 'cluster.local');
  t.equal(again.rootPem, first.rootPem, 'second start reuses the root');
  await t.rejects(CertificateAuthority.load(join(dir, 'missing')), { code: 'CA_LOAD', message: /missing ca-cert\.pem/ });
});

t.test('an intermediate plugged in with Istio layout: SVIDs carry the chain to the root', async (t) => {
  const root = await CertificateAuthority.create('cluster.local');
  // Reuse the CA's own cert as a stand-in "plugged in" signing cert: chain handling is what matters.
  const dir = mkdtempSync(join(tmpdir(), 'ztunnel-ts-ca-'));
  await root.save(dir);
  const loaded = await CertificateAuthority.load(dir);
  const svid = await loaded.issue(ID);
  t.equal(svid.chainPem.length, 1, 'self-signed root is not repeated in the chain');
  t.same(svid.rootsPem, [root.rootPem]);
});

t.test('cert manager renews at half life and keeps a valid certificate when the CA fails', async (t) => {
  const ca = await CertificateAuthority.create('cluster.local');
  let failing = false;
  let calls = 0;
  const source: CertificateSource = {
    fetch: async (id) => {
      calls += 1;
      if (failing) throw new Error('ca down');
      return ca.issue(id, { ttlMs: 1200 });
    },
  };
  const certs = new CertManager(source, pino({ level: 'silent' }));
  // Renewal timers are unref'd (a daemon is kept alive by its listeners); keep this test alive meanwhile.
  const alive = setInterval(() => undefined, 1000);
  t.teardown(() => {
    clearInterval(alive);
    certs.close();
  });
  const first = await certs.get(ID);
  const renewed = await new Promise<Svid>((r) => certs.once('updated', r));
  t.not(renewed.serial, first.serial, 'renewed before expiry');
  t.ok(Date.now() < first.notAfter.getTime(), 'renewal happened while the old one was still valid');
  failing = true;
  const before = calls;
  await new Promise((r) => setTimeout(r, 900));
  t.ok(calls > before, 'renewal was retried');
  t.equal(certs.peek(ID)?.serial, renewed.serial, 'still-valid certificate kept while the CA is down');
  failing = false;
  const recovered = await new Promise<Svid>((r) => certs.once('updated', r));
  t.not(recovered.serial, renewed.serial, 'recovers by itself when the CA returns');
});
