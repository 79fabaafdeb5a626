// The CSR a workload sends for its SVID: a fresh P-256 key, no subject, and one critical SAN extension with
// the SPIFFE URI, as Istio's agents send. Written with node:crypto and a few DER lines on purpose: the
// daemon needs nothing else of X.509 (it reads its certificates with node:crypto's X509Certificate), and
// @peculiar/x509 with its DI container costs every daemon about 10 MB of RSS. The CA parses and verifies
// these with @peculiar/x509 (src/identity/ca.ts), and the tests check them with OpenSSL.
import { generateKeyPair, sign, type KeyObject } from 'node:crypto';
import { promisify } from 'node:util';
import { IdentityError } from './errors.js';

export interface CertificateRequest {
  readonly csrPem: string;
  readonly keyPem: string;
}

const generateEcKeyPair = promisify(generateKeyPair);

/** A fresh key and a CSR carrying only the SPIFFE URI SAN. */
export async function createCsr(identity: string): Promise<CertificateRequest> {
  if (!/^[\x21-\x7e]+$/.test(identity)) throw new IdentityError('IDENTITY_INVALID', `a URI SAN is printable ASCII: ${JSON.stringify(identity)}`);
  const { publicKey, privateKey } = await generateEcKeyPair('ec', { namedCurve: 'prime256v1' });
  const info = certificationRequestInfo(identity, publicKey);
  // node:crypto signs ECDSA in DER (Ecdsa-Sig-Value), which is what X.509 carries.
  const signature = sign('sha256', info, privateKey);
  const der = seq(info, seq(OID_ECDSA_WITH_SHA256), bitString(signature));
  return { csrPem: pem('CERTIFICATE REQUEST', der), keyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString() };
}

/** CertificationRequestInfo (RFC 2986 §4.1): version 0, an empty subject, the key, an extensionRequest. */
function certificationRequestInfo(identity: string, publicKey: KeyObject): Buffer {
  const spki = publicKey.export({ type: 'spki', format: 'der' });
  const uri = tlv(0x86, Buffer.from(identity, 'ascii')); // GeneralName uniformResourceIdentifier [6] IMPLICIT IA5String
  const san = seq(OID_SUBJECT_ALT_NAME, tlv(0x01, Buffer.from([0xff])), tlv(0x04, seq(uri))); // critical
  const extensionRequest = seq(OID_EXTENSION_REQUEST, tlv(0x31, seq(san)));
  return seq(tlv(0x02, Buffer.from([0])), seq(), spki, tlv(0xa0, extensionRequest));
}

const OID_EXTENSION_REQUEST = oid('06092a864886f70d01090e'); // 1.2.840.113549.1.9.14
const OID_SUBJECT_ALT_NAME = oid('0603551d11'); // 2.5.29.17
const OID_ECDSA_WITH_SHA256 = oid('06082a8648ce3d040302'); // 1.2.840.10045.4.3.2

function oid(hex: string): Buffer {
  return Buffer.from(hex, 'hex');
}

/** One DER tag-length-value; lengths in the short form below 128 bytes, else the long form. */
function tlv(tag: number, ...contents: Buffer[]): Buffer {
  const body = Buffer.concat(contents);
  const n = body.length;
  const length = n < 0x80 ? Buffer.from([n]) : n < 0x100 ? Buffer.from([0x81, n]) : Buffer.from([0x82, n >> 8, n & 0xff]);
  if (n > 0xffff) throw new RangeError('DER value over 64 KiB');
  return Buffer.concat([Buffer.from([tag]), length, body]);
}

function seq(...contents: Buffer[]): Buffer {
  return tlv(0x30, ...contents);
}

function bitString(bytes: Buffer): Buffer {
  return tlv(0x03, Buffer.from([0]), bytes); // no unused bits
}

function pem(label: string, der: Buffer): string {
  const lines = der.toString('base64').match(/.{1,64}/g) ?? [];
  return `-----BEGIN ${label}-----\n${lines.join('\n')}\n-----END ${label}-----\n`;
}
