// TLS settings and peer identity checks shared by the HBONE client and server.
import type { PeerCertificate, TLSSocket } from 'node:tls';
import { firstSpiffeUri, parseIdentity } from '../model/identity.js';
import type { Svid } from '../identity/svid.js';
import { ALPN_H2 } from './constants.js';

export function tlsCredentials(svid: Svid): { cert: string; key: string; ca: string[] } {
  return { cert: svid.chainPem.join(''), key: svid.keyPem, ca: [...svid.rootsPem] };
}

export const TLS_BASE = { minVersion: 'TLSv1.3', maxVersion: 'TLSv1.3', ALPNProtocols: [ALPN_H2] } as const;

/** The peer's SPIFFE identity: the first spiffe:// URI SAN of its certificate. */
export function peerIdentity(socket: Pick<TLSSocket, 'getPeerCertificate'>): string | undefined {
  const cert: PeerCertificate | undefined = socket.getPeerCertificate();
  return firstSpiffeUri(cert?.subjectaltname);
}

/** True when identity is a workload identity of the given trust domain. */
export function inTrustDomain(identity: string | undefined, trustDomain: string): identity is string {
  return identity !== undefined && parseIdentity(identity)?.trustDomain === trustDomain;
}
