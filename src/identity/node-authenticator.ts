// Who is asking the CA: the node a daemon runs on, from its bearer token.
import type { CertificateAuthority } from './ca.js';
import { IdentityError } from './errors.js';
import { verifyCaToken, type Caller } from './tokens.js';

export type NodeAuthenticator = (token: string) => Promise<Caller>;

/** Lab/local mode: a JWT node (or pod) token signed by this CA. */
export function jwtNodeAuthenticator(ca: CertificateAuthority): NodeAuthenticator {
  return async (token) => verifyCaToken(await ca.tokenPublicKey, token);
}

export interface TokenReviewApi {
  /** TokenReview for the token with the audience; the authenticated user and its extra fields. */
  review(token: string, audience: string): Promise<{ authenticated: boolean; username?: string; extra?: Record<string, string[]>; error?: string }>;
  /** spec.nodeName of a pod. */
  podNode(namespace: string, name: string): Promise<string | undefined>;
}

export const CA_AUDIENCE = 'istio-ca';

/**
 * Cluster mode: a projected ServiceAccount token (audience istio-ca), checked with TokenReview and bound
 * to a pod. A token of an allowed service account (the node daemons') speaks for the node of its pod: any
 * identity of that node's pods. Any other token speaks for its own pod only (a waypoint, as istiod
 * would serve it).
 */
export function tokenReviewAuthenticator(api: TokenReviewApi, allowedServiceAccounts: readonly string[]): NodeAuthenticator {
  return async (token) => {
    const r = await api.review(token, CA_AUDIENCE).catch((err: Error) => {
      throw new IdentityError('CA_UNAVAILABLE', `tokenreview failed: ${err.message}`, { cause: err });
    });
    if (!r.authenticated) throw new IdentityError('CA_UNAUTHENTICATED', `token rejected by the API server${r.error === undefined ? '' : `: ${r.error}`}`);
    const m = /^system:serviceaccount:([^:]+):([^:]+)$/.exec(r.username ?? '');
    if (m === null) throw new IdentityError('CA_UNAUTHENTICATED', `${r.username ?? 'unknown user'} is not a service account`);
    const [namespace, serviceAccount] = [m[1] ?? '', m[2] ?? ''];
    const pod = r.extra?.['authentication.kubernetes.io/pod-name']?.[0];
    if (pod === undefined) throw new IdentityError('CA_UNAUTHENTICATED', 'token is not bound to a pod (use a projected ServiceAccount token)');
    if (!allowedServiceAccounts.includes(`${namespace}/${serviceAccount}`)) return { pod: `${namespace}/${pod}` };
    const node = await api.podNode(namespace, pod);
    if (node === undefined) throw new IdentityError('CA_UNAUTHENTICATED', `pod ${namespace}/${pod} of the token has no node`);
    return { node };
  };
}
