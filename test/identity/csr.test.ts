// The CSR a daemon sends its CA: written by hand in DER (src/identity/csr.ts), so OpenSSL and the CA's own
// parser both check it.
import { spawnSync } from 'node:child_process';
import { createPublicKey } from 'node:crypto';
import t from 'tap';
import { CertificateAuthority, uriSans } from '../../src/identity/ca.js';
import { createCsr } from '../../src/identity/csr.js';
import { x509 } from '../../src/identity/keys.js';

const openssl = spawnSync('openssl', ['version']).status === 0;
const ID = 'spiffe://cluster.local/ns/shop/sa/client';

function opensslReq(csrPem: string): { ok: boolean; text: string } {
  const r = spawnSync('openssl', ['req', '-verify', '-noout', '-text'], { input: csrPem, encoding: 'utf8' });
  return { ok: r.status === 0, text: `${r.stdout}${r.stderr}` };
}

t.test('OpenSSL reads it: self-signature verifies, no subject, a P-256 key, one critical URI SAN', { skip: openssl ? false : 'needs openssl' }, async (t) => {
  const { csrPem } = await createCsr(ID);
  const r = opensslReq(csrPem);
  t.ok(r.ok, r.text);
  t.match(r.text, /verify OK/);
  t.match(r.text, /ASN1 OID: prime256v1/);
  t.match(r.text, /ecdsa-with-SHA256/);
  t.match(r.text, /X509v3 Subject Alternative Name: critical\s+URI:spiffe:\/\/cluster\.local\/ns\/shop\/sa\/client\s/);
  t.match(r.text, /Subject:\s*\n/, 'an empty subject');
});

t.test('identities long enough for every DER length form (short, 0x81, 0x82) verify and come back exactly', async (t) => {
  for (const length of [40, 120, 130, 300, 1000]) {
    const identity = `spiffe://cluster.local/ns/shop/sa/${'a'.repeat(length)}`;
    const { csrPem } = await createCsr(identity);
    const csr = new x509.Pkcs10CertificateRequest(csrPem);
    t.ok(await csr.verify(), `${identity.length} characters: the signature verifies`);
    const raw = csr.getExtension('2.5.29.17');
    const ext = raw === null ? undefined : new x509.SubjectAlternativeNameExtension(raw.rawData);
    t.same(ext?.names.items.map((n) => [n.type, n.value]), [['url', identity]]);
    t.equal(ext?.critical, true);
    if (openssl) t.ok(opensslReq(csrPem).ok, 'and OpenSSL agrees');
  }
});

t.test('the key it returns is the CSR\'s key, and the CA signs it into an SVID for that identity', async (t) => {
  const req = await createCsr(ID);
  const csrKey = Buffer.from(new x509.Pkcs10CertificateRequest(req.csrPem).publicKey.rawData);
  t.same(createPublicKey(req.keyPem).export({ type: 'spki', format: 'der' }), csrKey);
  const ca = await CertificateAuthority.create('cluster.local');
  const svid = await ca.sign(req.csrPem, ID);
  t.same(uriSans(new x509.X509Certificate(svid.certPem)), [ID]);
  t.same(createPublicKey(svid.certPem).export({ type: 'spki', format: 'der' }), csrKey);
});

t.test('an identity that is not printable ASCII is refused before anything is signed', async (t) => {
  await t.rejects(createCsr('spiffe://cluster.local/ns/shöp/sa/x'), { code: 'IDENTITY_INVALID' });
  await t.rejects(createCsr('spiffe://cluster.local/ns/a b/sa/x'), { code: 'IDENTITY_INVALID' });
});
