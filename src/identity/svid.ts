// A workload's X.509 SVID and the CSR that asks for one.
import { EC_ALGORITHM, generateKeyPair, privateKeyToPem, x509 } from './keys.js';

export interface Svid {
  readonly identity: string;
  readonly certPem: string;
  /** Leaf first, then intermediates (not the root). */
  readonly chainPem: readonly string[];
  readonly keyPem: string;
  /** Trust anchors for peers' certificates. */
  readonly rootsPem: readonly string[];
  readonly notBefore: Date;
  readonly notAfter: Date;
  readonly serial: string;
}

export interface CertificateRequest {
  readonly csrPem: string;
  readonly keyPem: string;
}

/** A fresh key and a CSR carrying only the SPIFFE URI SAN, as Istio's agents send. */
export async function createCsr(identity: string): Promise<CertificateRequest> {
  const keys = await generateKeyPair();
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({
    keys,
    signingAlgorithm: EC_ALGORITHM,
    extensions: [new x509.SubjectAlternativeNameExtension([{ type: 'url', value: identity }], true)],
  });
  return { csrPem: csr.toString('pem'), keyPem: await privateKeyToPem(keys.privateKey) };
}

/**
 * When renewal is due: half of the life left at the time it was received. notBefore is not used as the
 * start, since CAs backdate it for clock skew and a short-lived certificate would renew at once, forever.
 */
export function renewalTime(svid: Pick<Svid, 'notAfter'>, receivedAt: number): number {
  return receivedAt + Math.max(0, svid.notAfter.getTime() - receivedAt) / 2;
}

export function uriSans(cert: x509.X509Certificate): string[] {
  const ext = cert.getExtension(x509.SubjectAlternativeNameExtension);
  return ext?.names.items.filter((n) => n.type === 'url').map((n) => n.value) ?? [];
}
