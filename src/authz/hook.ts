// The one authorization hook every inbound path calls. The AuthorizationPolicy engine plugs in here.
import type { SocketAddress } from '../hbone/headers.js';
import type { Workload } from '../model/types.js';

export interface AuthzRequest {
  readonly src: SocketAddress;
  readonly dst: SocketAddress;
  /** Verified SPIFFE identity; undefined for plaintext sources. */
  readonly srcIdentity: string | undefined;
  readonly dstWorkload: Workload;
}

export interface AuthzDecision {
  readonly allow: boolean;
  /** "namespace/name" of the deciding policy, when one decided. */
  readonly policy: string | undefined;
  readonly reason: string;
}

export interface Authorizer {
  authorize(req: AuthzRequest): AuthzDecision;
}
