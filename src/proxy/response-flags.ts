// The one place that says what a refused or failed connection is called (the access log's and the
// metrics' response_flags, the flow's verdict) and what an HBONE server answers for it.
import { HboneError, type HboneErrorCode } from '../hbone/errors.js';
import { ProxyError, type ProxyErrorCode } from './errors.js';

export type ResponseFlag =
  | 'DENIED'
  | 'NO_ROUTE'
  | 'NO_HEALTHY_UPSTREAM'
  | 'NO_SERVICE_PORT'
  | 'UNKNOWN_SOURCE'
  | 'RECURSION'
  | 'UPSTREAM_CONNECT'
  | `UPSTREAM_${number}`
  | 'CONNECTION_LIMIT'
  | 'CONNECTION_TERMINATED'
  | 'CONNECTION_FAILURE'
  | 'DOWNSTREAM_RESET'
  | 'PROXY_BIND'
  | 'PROXY_DRAINING'
  | 'PROXY_NO_ENDPOINTS'
  | HboneErrorCode;

interface Refusal {
  readonly flag: ResponseFlag;
  /** What an HBONE server answers a CONNECT refused this way. */
  readonly status: number;
}

// Exhaustive: a new ProxyErrorCode does not compile until it is given its flag and status here.
const PROXY_REFUSALS: Readonly<Record<ProxyErrorCode, Refusal>> = {
  PROXY_DENIED: { flag: 'DENIED', status: 401 },
  PROXY_RECURSION: { flag: 'RECURSION', status: 400 },
  PROXY_UNKNOWN_TARGET: { flag: 'NO_ROUTE', status: 503 },
  PROXY_UPSTREAM_CONNECT: { flag: 'UPSTREAM_CONNECT', status: 503 },
  PROXY_LIMIT: { flag: 'CONNECTION_LIMIT', status: 503 },
  PROXY_UNKNOWN_SOURCE: { flag: 'UNKNOWN_SOURCE', status: 503 },
  PROXY_NO_ENDPOINTS: { flag: 'PROXY_NO_ENDPOINTS', status: 503 },
  PROXY_BIND: { flag: 'PROXY_BIND', status: 503 },
  PROXY_DRAINING: { flag: 'PROXY_DRAINING', status: 503 },
};

const FAILURE: Refusal = { flag: 'CONNECTION_FAILURE', status: 503 };

/** The flag and HBONE status for an error that ended a connection before any byte was carried. */
export function refusalFor(err: unknown): Refusal {
  if (err instanceof ProxyError) return PROXY_REFUSALS[err.code];
  if (err instanceof HboneError) {
    if (err.code !== 'HBONE_CONNECT_STATUS') return { flag: err.code, status: 503 };
    // The peer's own answer: a 401 is its policy's denial, anything else names its status.
    const status = err.status ?? 0;
    return { flag: status === 401 ? 'DENIED' : `UPSTREAM_${status}`, status: 503 };
  }
  return FAILURE;
}

export const responseFlag = (err: unknown): ResponseFlag => refusalFor(err).flag;
