// A workload's X.509 SVID, as the daemon holds it (src/identity/csr.ts writes the request for one).
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

/**
 * When renewal is due: half of the life left at the time it was received. notBefore is not used as the
 * start, since CAs backdate it for clock skew and a short-lived certificate would renew at once, forever.
 */
export function renewalTime(svid: Pick<Svid, 'notAfter'>, receivedAt: number): number {
  return receivedAt + Math.max(0, svid.notAfter.getTime() - receivedAt) / 2;
}
