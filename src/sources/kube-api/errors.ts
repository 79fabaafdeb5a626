export type KubeApiErrorCode =
  /** The kubeconfig (or the in-cluster environment) cannot be used; names the file and field. */
  | 'KUBECONFIG_INVALID'
  /** The API server answered with an error status; statusCode and reason say which. */
  | 'KUBE_API_STATUS'
  /** No answer: refused, reset, TLS failure, or no response within the deadline. */
  | 'KUBE_API_UNREACHABLE'
  /** An answer that is not the JSON the API promises. */
  | 'KUBE_API_RESPONSE';

export class KubeApiError extends Error {
  readonly code: KubeApiErrorCode;
  /** The HTTP status, or a watch ERROR event's Status code (410 when the resourceVersion is too old). */
  readonly statusCode: number | undefined;
  /** The Status object's reason (NotFound, Expired, Forbidden, ...). */
  readonly reason: string | undefined;

  constructor(code: KubeApiErrorCode, message: string, options?: ErrorOptions & { statusCode?: number; reason?: string }) {
    super(message, options);
    this.name = 'KubeApiError';
    this.code = code;
    this.statusCode = options?.statusCode;
    this.reason = options?.reason;
  }
}
