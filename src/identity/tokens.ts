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

/** The node a token speaks for; throws CA_UNAUTHENTICATED with the reason otherwise. */
export async function verifyNodeToken(publicKey: CryptoKey, token: string): Promise<string> {
  try {
    const { payload } = await jwtVerify(token, publicKey, {
      issuer: TOKEN_ISSUER,
      audience: TOKEN_AUDIENCE,
      algorithms: ['ES256'],
    });
    if (typeof payload['node'] !== 'string' || payload['node'] === '') throw new Error('token names no node');
    return payload['node'];
  } catch (err) {
    throw new IdentityError('CA_UNAUTHENTICATED', `node token rejected: ${(err as Error).message}`, { cause: err });
  }
}
