// SPIFFE identities of workloads: spiffe://<trust domain>/ns/<namespace>/sa/<service account>.

export interface Identity {
  readonly trustDomain: string;
  readonly namespace: string;
  readonly serviceAccount: string;
}

export const DEFAULT_TRUST_DOMAIN = 'cluster.local';

const SPIFFE_RE = /^spiffe:\/\/([^/]+)\/ns\/([^/]+)\/sa\/([^/]+)$/;

export function identityToString(id: Identity): string {
  return `spiffe://${id.trustDomain}/ns/${id.namespace}/sa/${id.serviceAccount}`;
}

/** Parses a SPIFFE URI of the Kubernetes shape; undefined when it is not one. */
export function parseIdentity(uri: string): Identity | undefined {
  const m = SPIFFE_RE.exec(uri);
  if (m === null) return undefined;
  const [, trustDomain, namespace, serviceAccount] = m as unknown as [string, string, string, string];
  return { trustDomain, namespace, serviceAccount };
}

/** The first spiffe:// URI in a Node-style subjectaltname string ("URI:spiffe://..., DNS:..."). */
export function firstSpiffeUri(subjectAltName: string | undefined): string | undefined {
  if (subjectAltName === undefined) return undefined;
  for (const part of subjectAltName.split(',')) {
    const entry = part.trim();
    if (entry.startsWith('URI:spiffe://')) return entry.slice(4);
  }
  return undefined;
}
