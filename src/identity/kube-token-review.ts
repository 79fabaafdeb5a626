// TokenReview and pod lookups against the API server, for the CA in cluster mode.
import * as k8s from '@kubernetes/client-node';
import type { TokenReviewApi } from './node-authenticator.js';

export function kubeTokenReviewApi(kc: k8s.KubeConfig): TokenReviewApi {
  const authn = kc.makeApiClient(k8s.AuthenticationV1Api);
  const core = kc.makeApiClient(k8s.CoreV1Api);
  return {
    review: async (token, audience) => {
      const r = await authn.createTokenReview({ body: { apiVersion: 'authentication.k8s.io/v1', kind: 'TokenReview', spec: { token, audiences: [audience] } } });
      const status = r.status ?? {};
      return {
        authenticated: status.authenticated === true && (status.audiences === undefined || status.audiences.includes(audience)),
        ...(status.user?.username === undefined ? {} : { username: status.user.username }),
        ...(status.user?.extra === undefined ? {} : { extra: status.user.extra }),
        ...(status.error === undefined ? {} : { error: status.error }),
      };
    },
    podNode: async (namespace, name) => {
      try {
        return (await core.readNamespacedPod({ namespace, name })).spec?.nodeName;
      } catch {
        return undefined;
      }
    },
  };
}
