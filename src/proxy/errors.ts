export type ProxyErrorCode =
  | 'PROXY_BIND'
  | 'PROXY_UPSTREAM_CONNECT'
  | 'PROXY_NO_ENDPOINTS'
  | 'PROXY_UNKNOWN_SOURCE'
  | 'PROXY_UNKNOWN_TARGET'
  | 'PROXY_DENIED'
  | 'PROXY_RECURSION'
  | 'PROXY_DRAINING'
  | 'PROXY_LIMIT';

export class ProxyError extends Error {
  readonly code: ProxyErrorCode;

  constructor(code: ProxyErrorCode, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'ProxyError';
    this.code = code;
  }
}
