// TokenReview and pod lookups against the API server, for the CA in cluster mode.
import type { KubeApi } from '../sources/kube-api/api-client.js';
import type { TokenReviewApi } from './node-authenticator.js';

interface TokenReviewStatus {
  authenticated?: boolean;
  audiences?: string[];
  user?: { username?: string; extra?: Record<string, string[]> };
  error?: string;
}

export function kubeTokenReviewApi(api: KubeApi): TokenReviewApi {
  return {
    review: async (token, audience) => {
      const r = (await api.postJson('/apis/authentication.k8s.io/v1/tokenreviews', {
        apiVersion: 'authentication.k8s.io/v1',
        kind: 'TokenReview',
        spec: { token, audiences: [audience] },
      })) as { status?: TokenReviewStatus } | undefined;
      const status = r?.status ?? {};
      return {
        authenticated: status.authenticated === true && (status.audiences === undefined || status.audiences.includes(audience)),
        ...(status.user?.username === undefined ? {} : { username: status.user.username }),
        ...(status.user?.extra === undefined ? {} : { extra: status.user.extra }),
        ...(status.error === undefined ? {} : { error: status.error }),
      };
    },
    podNode: async (namespace, name) => {
      try {
        const pod = (await api.getJson(`/api/v1/namespaces/${encodeURIComponent(namespace)}/pods/${encodeURIComponent(name)}`)) as { spec?: { nodeName?: string } } | undefined;
        return pod?.spec?.nodeName;
      } catch {
        return undefined;
      }
    },
  };
}
