// The inbound decision, made before any I/O (beside buildOutboundRequest): may this connection reach
// the local pod it names, and as which workload. Every entry into a local pod (HBONE, plaintext capture,
// the same-node hand-over) is decided here, once; the caller connects or refuses.
import type { AuthzDecision, AuthzRequest, Authorizer } from '../authz/hook.js';
import type { SocketAddress } from '../hbone/headers.js';
import type { State } from '../model/state.js';
import type { Workload } from '../model/types.js';
import { ProxyError } from './errors.js';
import { recursionReason } from './recursion.js';

export interface InboundContext {
  readonly state: State;
  readonly nodeName: string;
  readonly authorizer: Authorizer;
}

/** What was asked: from whom (the verified identity, for HBONE), to which pod address. */
export interface InboundAsk {
  readonly src: SocketAddress;
  readonly srcIdentity: string | undefined;
  readonly dst: SocketAddress;
}

export type InboundRequest = InboundAsk &
  (
  /** Allowed: connect to the pod from the client's own IP. */
  | { readonly kind: 'connect'; readonly workload: Workload; readonly authz: AuthzRequest; readonly decision: AuthzDecision }
  /** Refused; workload is the pod it named when there is one (for the access log), decision the policy's when it denied. */
  | { readonly kind: 'refuse'; readonly error: ProxyError; readonly workload: Workload | undefined; readonly decision?: AuthzDecision });

/** The captured workload at ip on this node, if any: the only pods the inbound side delivers to. */
export function localWorkload(state: State, nodeName: string, ip: string): Workload | undefined {
  const w = state.workloadByIp(ip);
  return w !== undefined && w.node === nodeName && w.captured ? w : undefined;
}

export function buildInboundRequest(ctx: InboundContext, src: SocketAddress, srcIdentity: string | undefined, dst: SocketAddress): InboundRequest {
  const ask: InboundAsk = { src, srcIdentity, dst };
  const workload = localWorkload(ctx.state, ctx.nodeName, dst.ip);
  if (workload === undefined) {
    return { ...ask, kind: 'refuse', workload, error: new ProxyError('PROXY_UNKNOWN_TARGET', `no captured workload at ${dst.ip} on node ${ctx.nodeName}`) };
  }
  const loop = recursionReason(ctx.state, ctx.nodeName, dst);
  if (loop !== undefined) return { ...ask, kind: 'refuse', workload, error: new ProxyError('PROXY_RECURSION', loop) };
  const authz: AuthzRequest = { src, dst, srcIdentity, dstWorkload: workload };
  const decision = ctx.authorizer.authorize(authz);
  if (!decision.allow) return { ...ask, kind: 'refuse', workload, decision, error: new ProxyError('PROXY_DENIED', `denied: ${decision.reason}`) };
  return { ...ask, kind: 'connect', workload, authz, decision };
}
