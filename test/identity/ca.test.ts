import { once } from 'node:events';
import { mkdtempSync, statSync, writeFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import tls from 'node:tls';
import { pino } from 'pino';
import t from 'tap';
import { CertificateAuthority } from '../../src/identity/ca.js';
import { CertManager } from '../../src/identity/cert-manager.js';
import { EC_ALGORITHM, generateKeyPair, privateKeyToPem, randomSerial, x509 } from '../../src/identity/keys.js';
import type { CertificateSource } from '../../src/identity/source.js';
import { uriSans } from '../../src/identity/ca.js';
import { createCsr } from '../../src/identity/csr.js';
import type { Svid } from '../../src/identity/svid.js';

const ID = 'spiffe://cluster.local/ns/app/sa/web';

t.test('workload SVID: P-256, URI SAN only, empty subject, 24 h by default, chains to the root', async (t) => {
  const ca = await CertificateAuthority.create('cluster.local');
  const svid = await ca.issue(ID);
  const cert = new x509.X509Certificate(svid.certPem);
  t.same(uriSans(cert), [ID]);
  t.equal(cert.subject, '');
  t.equal((cert.publicKey.algorithm as EcKeyAlgorithm).namedCurve, 'P-256');
  // notBefore is backdated 60 s for peers with a slow clock.
  t.equal(cert.notAfter.getTime() - cert.notBefore.getTime() - 60_000, 24 * 3600_000, 'valid for 24 h');
  t.ok(await cert.verify({ publicKey: new x509.X509Certificate(ca.rootPem).publicKey, signatureOnly: true }));
});

t.test('a CSR for another identity is refused', async (t) => {
  const ca = await CertificateAuthority.create('cluster.local');
  const req = await createCsr('spiffe://cluster.local/ns/other/sa/evil');
  await t.rejects(ca.sign(req.csrPem, ID), { code: 'CA_CSR_INVALID' });
});

t.test('regression (fuzzing): a CSR whose public key WebCrypto cannot import is a CA_CSR_INVALID, not an internal error', async (t) => {
  const ca = await CertificateAuthority.create('cluster.local');
  const der = Buffer.from((await createCsr(ID)).csrPem.replace(/-----[^-]+-----|\s/g, ''), 'base64');
  // The P-256 point is the BIT STRING 03 42 00 04 <x> <y>: 04 (uncompressed) becomes 05, no form at all
  // (06 and 07 are X9.62's hybrid forms, which OpenSSL takes when the parity matches).
  const at = der.indexOf(Buffer.from([0x03, 0x42, 0x00, 0x04]));
  t.ok(at > 0, 'the CSR has an uncompressed P-256 point');
  der[at + 3] = 0x05;
  const pem = `-----BEGIN CERTIFICATE REQUEST-----\n${der.toString('base64')}\n-----END CERTIFICATE REQUEST-----\n`;
  await t.rejects(ca.sign(pem, ID), { name: 'IdentityError', code: 'CA_CSR_INVALID', message: /public key or signature is unusable/ });
  await t.rejects(ca.sign('-----BEGIN CERTIFICATE REQUEST-----\nMAA=\n-----END CERTIFICATE REQUEST-----\n', ID), { code: 'CA_CSR_INVALID' }, 'an empty SEQUENCE likewise');
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

/** A root and an intermediate signed by it, as an operator brings them (Istio's plug-in CA layout). */
async function rootAndIntermediate(): Promise<{ rootPem: string; intermediatePem: string; intermediateKeyPem: string; intermediate: x509.X509Certificate; root: x509.X509Certificate }> {
  const now = Date.now();
  const rootKeys = await generateKeyPair();
  const root = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: randomSerial(),
    name: 'O=cluster.local, CN=operator root',
    notBefore: new Date(now - 60_000),
    notAfter: new Date(now + 365 * 24 * 3600_000),
    signingAlgorithm: EC_ALGORITHM,
    keys: rootKeys,
    extensions: [new x509.BasicConstraintsExtension(true, undefined, true), new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign, true)],
  });
  const keys = await generateKeyPair();
  const intermediate = await x509.X509CertificateGenerator.create({
    serialNumber: randomSerial(),
    subject: 'O=cluster.local, CN=operator intermediate',
    issuer: root.subjectName,
    notBefore: new Date(now - 60_000),
    notAfter: new Date(now + 30 * 24 * 3600_000),
    signingAlgorithm: EC_ALGORITHM,
    publicKey: keys.publicKey,
    signingKey: rootKeys.privateKey,
    extensions: [new x509.BasicConstraintsExtension(true, 0, true), new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign, true)],
  });
  return {
    rootPem: root.toString('pem') + '\n',
    intermediatePem: intermediate.toString('pem') + '\n',
    intermediateKeyPem: await privateKeyToPem(keys.privateKey),
    intermediate,
    root,
  };
}

/** Whether a TLS client that trusts only rootPem accepts a server presenting svid's chain. */
async function acceptedWithRootOnly(svid: Svid, rootPem: string): Promise<boolean> {
  const server = tls.createServer({ cert: svid.chainPem.join(''), key: svid.keyPem, minVersion: 'TLSv1.3' }, (s) => s.end());
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  try {
    // Not rejected at the handshake, so that `authorized` reports the chain verification itself.
    const socket = tls.connect({ host: '127.0.0.1', port: (server.address() as AddressInfo).port, ca: rootPem, rejectUnauthorized: false, checkServerIdentity: () => undefined });
    await once(socket, 'secureConnect');
    const ok = socket.authorized;
    socket.destroy();
    return ok;
  } finally {
    server.close();
  }
}

t.test('an intermediate plugged in with Istio layout: SVIDs carry leaf and intermediate, and verify against the root only', async (t) => {
  const pki = await rootAndIntermediate();
  const layouts: [string, string | undefined][] = [
    ['cert-chain.pem = intermediate + root', pki.intermediatePem + pki.rootPem],
    ['cert-chain.pem = root only', pki.rootPem],
    ['no cert-chain.pem', undefined],
  ];
  for (const [what, chainFile] of layouts) {
    const dir = mkdtempSync(join(tmpdir(), 'ztunnel-ts-ca-'));
    writeFileSync(join(dir, 'ca-cert.pem'), pki.intermediatePem);
    writeFileSync(join(dir, 'ca-key.pem'), pki.intermediateKeyPem, { mode: 0o600 });
    writeFileSync(join(dir, 'root-cert.pem'), pki.rootPem);
    if (chainFile !== undefined) writeFileSync(join(dir, 'cert-chain.pem'), chainFile);
    const ca = await CertificateAuthority.load(dir);
    const svid = await ca.issue(ID);
    t.equal(svid.chainPem.length, 2, `${what}: leaf and intermediate, the root is not sent`);
    t.ok(new x509.X509Certificate(svid.chainPem[1] ?? '').equal(pki.intermediate), `${what}: the second certificate is the intermediate`);
    t.same(svid.rootsPem, [pki.rootPem], `${what}: the trust bundle is the operator's root`);
    const leaf = new x509.X509Certificate(svid.certPem);
    t.ok(await leaf.verify({ publicKey: pki.intermediate.publicKey, signatureOnly: true }), `${what}: the leaf is signed by the intermediate`);
    t.notOk(await leaf.verify({ publicKey: pki.root.publicKey, signatureOnly: true }), `${what}: not by the root`);
    t.ok(await acceptedWithRootOnly(svid, pki.rootPem), `${what}: a TLS peer that trusts only the root accepts the chain`);
  }
  // Without the intermediate in the chain the same peer refuses: the check above can fail.
  const dir = mkdtempSync(join(tmpdir(), 'ztunnel-ts-ca-'));
  writeFileSync(join(dir, 'ca-cert.pem'), pki.intermediatePem);
  writeFileSync(join(dir, 'ca-key.pem'), pki.intermediateKeyPem, { mode: 0o600 });
  writeFileSync(join(dir, 'root-cert.pem'), pki.rootPem);
  const svid = await (await CertificateAuthority.load(dir)).issue(ID);
  t.notOk(await acceptedWithRootOnly({ ...svid, chainPem: [svid.certPem] }, pki.rootPem), 'a leaf alone does not verify against the root');
});

t.test('a self-signed root as the signing certificate is not repeated in the chain', async (t) => {
  const root = await CertificateAuthority.create('cluster.local');
  const dir = mkdtempSync(join(tmpdir(), 'ztunnel-ts-ca-'));
  await root.save(dir);
  const svid = await (await CertificateAuthority.load(dir)).issue(ID);
  t.equal(svid.chainPem.length, 1);
  t.same(svid.rootsPem, [root.rootPem]);
});

t.test('cert manager renews at half life and keeps a valid certificate when the CA fails', async (t) => {
  const ca = await CertificateAuthority.create('cluster.local');
  let failing = false;
  let failures = 0;
  const source: CertificateSource = {
    fetch: async (id) => {
      if (failing) {
        failures += 1;
        throw new Error('ca down');
      }
      return ca.issue(id, { ttlMs: 6000 });
    },
  };
  const certs = new CertManager(source, pino({ level: 'silent' }));
  // Renewal timers are unref'd (a daemon is kept alive by its listeners); keep this test alive meanwhile.
  const alive = setInterval(() => undefined, 1000);
  t.teardown(() => {
    clearInterval(alive);
    certs.close();
  });
  const until = async (what: string, cond: () => boolean): Promise<void> => {
    for (const end = Date.now() + 10_000; !cond(); await new Promise((r) => setTimeout(r, 20))) {
      if (Date.now() > end) throw new Error(`never: ${what}`);
    }
  };
  const first = await certs.get(ID);
  const renewed = await new Promise<Svid>((r) => certs.once('updated', r));
  t.not(renewed.serial, first.serial, 'renewed before expiry');
  t.ok(renewed.notBefore.getTime() < first.notAfter.getTime() && Date.now() < first.notAfter.getTime(), 'renewal happened while the old one was still valid');
  failing = true;
  await until('two failed renewals', () => failures >= 2);
  t.pass('a failed renewal is retried');
  t.ok(Date.now() < renewed.notAfter.getTime(), 'the current certificate is still valid (so the next check means something)');
  t.equal(certs.peek(ID)?.serial, renewed.serial, 'still-valid certificate kept while the CA is down');
  t.equal((await certs.get(ID)).serial, renewed.serial, 'and handed out');
  failing = false;
  const recovered = await new Promise<Svid>((r) => certs.once('updated', r));
  t.not(recovered.serial, renewed.serial, 'recovers by itself when the CA returns');
});
