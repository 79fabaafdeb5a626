// Node tokens for lab/local mode: a JWT (ES256) that the CA signs and later verifies, naming the node a
// daemon runs on. Issuance is then restricted to identities of pods on that node.
import { SignJWT, jwtVerify } from 'jose';
import { IdentityError } from './errors.js';

export const TOKEN_ISSUER = 'ztunnel-ts-ca';
export const TOKEN_AUDIENCE = 'istio-ca';

export async function issueNodeToken(key: CryptoKey, node: string, ttlSeconds = 365 * 24 * 3600): Promise<string> {
  return new SignJWT({ node })
    .setProtectedHeader({ alg: 'ES256', typ: 'JWT' })
    .setIssuer(TOKEN_ISSUER)
    .setAudience(TOKEN_AUDIENCE)
    .setSubject(`system:node:${node}`)
    .setIssuedAt()
    .setExpirationTime(Math.floor(Date.now() / 1000) + ttlSeconds)
    .sign(key);
}

/** A pod token: it may obtain only its own pod's identity (a waypoint's, in the lab). */
export async function issuePodToken(key: CryptoKey, namespace: string, name: string, ttlSeconds = 365 * 24 * 3600): Promise<string> {
  return new SignJWT({ pod: `${namespace}/${name}` })
    .setProtectedHeader({ alg: 'ES256', typ: 'JWT' })
    .setIssuer(TOKEN_ISSUER)
    .setAudience(TOKEN_AUDIENCE)
    .setSubject(`system:pod:${namespace}/${name}`)
    .setIssuedAt()
    .setExpirationTime(Math.floor(Date.now() / 1000) + ttlSeconds)
    .sign(key);
}

/** Who a CA token speaks for: a node (any identity of its pods) or one pod (its own identity). */
export type Caller = { readonly node: string } | { readonly pod: string };

export function describeCaller(c: Caller): string {
  return 'node' in c ? `node ${c.node}` : `pod ${c.pod}`;
}

/** The caller a token speaks for; throws CA_UNAUTHENTICATED with the reason otherwise. */
export async function verifyCaToken(publicKey: CryptoKey, token: string): Promise<Caller> {
  try {
    const { payload } = await jwtVerify(token, publicKey, {
      issuer: TOKEN_ISSUER,
      audience: TOKEN_AUDIENCE,
      algorithms: ['ES256'],
    });
    if (typeof payload['node'] === 'string' && payload['node'] !== '') return { node: payload['node'] };
    if (typeof payload['pod'] === 'string' && /^[^/]+\/[^/]+$/.test(payload['pod'])) return { pod: payload['pod'] };
    throw new Error('token names no node and no pod');
  } catch (err) {
    throw new IdentityError('CA_UNAUTHENTICATED', `token rejected: ${(err as Error).message}`, { cause: err });
  }
}
