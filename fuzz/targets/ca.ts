// What the CA takes from callers: a certificate signing request (PEM text as sent, or DER wrapped in PEM
// so the fuzzer mutates the ASN.1 itself) and a bearer token. Each is signed or verified, or refused with
// an IdentityError; nothing else.
import { CertificateAuthority } from '../../src/identity/ca.js';
import { IdentityError } from '../../src/identity/errors.js';
import { verifyCaToken } from '../../src/identity/tokens.js';
import { generateKeyPair } from '../../src/identity/keys.js';
import { check, expectingAsync } from './contract.js';

const IDENTITY = 'spiffe://cluster.local/ns/app/sa/client';
let ready: Promise<{ ca: CertificateAuthority; tokenKey: CryptoKey }> | undefined;

export async function fuzz(data: Buffer): Promise<void> {
  ready ??= Promise.all([CertificateAuthority.create('cluster.local'), generateKeyPair()]).then(([ca, keys]) => ({ ca, tokenKey: keys.publicKey }));
  const { ca, tokenKey } = await ready;
  const mode = (data[0] ?? 0) % 3;
  const body = data.subarray(1);
  if (mode === 2) {
    await expectingAsync(() => verifyCaToken(tokenKey, body.toString('utf8')), IdentityError);
    return;
  }
  const pem = mode === 0 ? body.toString('utf8') : `-----BEGIN CERTIFICATE REQUEST-----\n${body.toString('base64')}\n-----END CERTIFICATE REQUEST-----\n`;
  const svid = await expectingAsync(() => ca.sign(pem, IDENTITY), IdentityError);
  if (svid !== undefined) check(svid.identity === IDENTITY, `signed for ${svid.identity}`);
}
