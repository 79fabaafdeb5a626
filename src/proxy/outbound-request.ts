// The outbound routing decision, made before any I/O: where a captured connection goes and how.
import type { SocketAddress } from '../hbone/headers.js';
import { ipFamily, ipOfFamily, type IpFamily } from '../model/address.js';
import type { State } from '../model/state.js';
import type { Service, Workload } from '../model/types.js';
import { NO_POLICY, type Choice, type ChoiceClient, type EndpointVerdict } from './endpoint-choice.js';
import { EndpointPicker } from './endpoint-picker.js';
import { recursionReason } from './recursion.js';

/** Every endpoint that was considered for a Service or waypoint, and what became of it (for `route check`). */
export type Considered = { readonly considered?: readonly EndpointVerdict<unknown>[] };

export type OutboundRequest = Considered &
  (
  /** HBONE to the destination's node (the pod IP on port 15008). */
  | {
      readonly kind: 'hbone';
      readonly target: SocketAddress;
      readonly nextHop: SocketAddress;
      readonly dstIdentities: readonly string[];
      readonly dstWorkload: Workload;
      readonly service: Service | undefined;
      /** "namespace/name" of the waypoint when the connection goes through one (dstWorkload is its pod). */
      readonly waypoint?: string;
    }
  /** Captured destination on this node: handed to the inbound side in-process. */
  | { readonly kind: 'local'; readonly target: SocketAddress; readonly dstWorkload: Workload; readonly service: Service | undefined }
  /** Plain TCP: destination not in the mesh, or not known at all (passthrough). */
  | {
      readonly kind: 'tcp';
      readonly target: SocketAddress;
      readonly dstWorkload: Workload | undefined;
      readonly service: Service | undefined;
    }
  | { readonly kind: 'reject'; readonly reason: string; readonly flag: 'NO_HEALTHY_UPSTREAM' | 'RECURSION' | 'NO_SERVICE_PORT' });

export interface OutboundContext {
  readonly state: State;
  readonly nodeName: string;
  readonly hbonePort: number;
  /** Chooses among endpoints with this process's load and affinity; a fresh one (no history) by default. */
  readonly endpoints?: EndpointPicker;
}

/** Who is connecting, for locality, internalTrafficPolicy and ClientIP affinity. */
function clientOf(ctx: OutboundContext, src: Workload): ChoiceClient {
  return { node: ctx.nodeName, locality: ctx.state.node(ctx.nodeName)?.locality ?? src.locality, ip: src.ip };
}

export function buildOutboundRequest(ctx: OutboundContext, src: Workload, dst: SocketAddress): OutboundRequest {
  // The source is a captured pod, so its own daemon ports are covered too.
  const loop = recursionReason(ctx.state, ctx.nodeName, dst);
  if (loop !== undefined) return { kind: 'reject', reason: loop, flag: 'RECURSION' };
  const service = ctx.state.serviceByVip(dst.ip);
  if (service !== undefined) {
    if (service.waypoint !== undefined && src.implementsWaypoint !== service.waypoint) {
      return viaWaypoint(ctx, src, service.waypoint, dst, service);
    }
    return viaService(ctx, src, service, dst);
  }
  const workload = ctx.state.workloadByIp(dst.ip);
  if (workload?.waypoint !== undefined && src.implementsWaypoint !== workload.waypoint) {
    return viaWaypoint(ctx, src, workload.waypoint, dst, undefined);
  }
  return toWorkload(ctx, workload, dst, undefined);
}

/**
 * L7 is required: HBONE to a pod of the waypoint, with :authority the address the client used (the VIP),
 * so the waypoint routes by service. With no waypoint pod the connection fails: going around the
 * waypoint would skip its policies.
 */
function viaWaypoint(ctx: OutboundContext, src: Workload, waypoint: string, dst: SocketAddress, service: Service | undefined): OutboundRequest {
  const pods = ctx.state.waypointPods(waypoint).map((w) => ({ endpoint: w, value: undefined }));
  const choice = (ctx.endpoints ?? new EndpointPicker()).choose({ ...NO_POLICY, uid: `waypoint ${waypoint}` }, pods, clientOf(ctx, src));
  if (!choice.ok) return { kind: 'reject', reason: `waypoint ${waypoint}: ${choice.reason === 'no endpoints' ? 'no pods' : choice.reason}`, flag: 'NO_HEALTHY_UPSTREAM', considered: choice.verdicts };
  const pod = choice.endpoint;
  return {
    kind: 'hbone',
    target: dst,
    // The waypoint pod's address of the family the client used (a waypoint listens on each), else its primary.
    nextHop: { ip: ipOfFamily(pod.ips, ipFamily(dst.ip)) ?? pod.ip, port: ctx.hbonePort },
    dstIdentities: [pod.identity],
    dstWorkload: pod,
    service,
    waypoint,
    considered: choice.verdicts,
  };
}

function viaService(ctx: OutboundContext, src: Workload, service: Service, dst: SocketAddress): OutboundRequest {
  // A dual-stack Service: the endpoint's address of the family of the cluster IP the client used.
  const family = ipFamily(dst.ip);
  const choice = chooseServiceEndpoint(ctx.state, ctx.endpoints ?? new EndpointPicker(), service, dst.port, clientOf(ctx, src), family);
  if (choice === undefined) {
    return { kind: 'reject', reason: `service ${service.uid} has no port ${dst.port}`, flag: 'NO_SERVICE_PORT' };
  }
  if (!choice.ok) return { kind: 'reject', reason: `service ${service.uid}: ${choice.reason}`, flag: 'NO_HEALTHY_UPSTREAM', considered: choice.verdicts };
  const ip = ipOfFamily(choice.endpoint.ips, family) ?? choice.endpoint.ip;
  return { ...toWorkload(ctx, choice.endpoint, { ip, port: choice.value }, service), considered: choice.verdicts };
}

/**
 * The endpoint of service for a connection to its port (the value is the target port on the chosen pod);
 * undefined when the service has no such port. With family, only endpoints with an address of that family
 * are candidates (an IPv6 client of a dual-stack Service reaches its pods over IPv6). The daemon, the
 * waypoint and `route check` all decide here.
 */
export function chooseServiceEndpoint(state: State, picker: EndpointPicker, service: Service, port: number, client: ChoiceClient, family?: IpFamily): Choice<number> | undefined {
  const sp = service.ports.find((p) => p.port === port);
  if (sp === undefined) return undefined;
  const candidates = state.endpointsOf(service).flatMap((w) => {
    if (family !== undefined && ipOfFamily(w.ips, family) === undefined) return [];
    const target = typeof sp.targetPort === 'number' ? sp.targetPort : w.namedPorts[sp.targetPort];
    return target === undefined ? [] : [{ endpoint: w, value: target }];
  });
  return picker.choose(service, candidates, client);
}

function toWorkload(
  ctx: OutboundContext,
  workload: Workload | undefined,
  target: SocketAddress,
  service: Service | undefined,
): OutboundRequest {
  // A service whose target port is a daemon port would loop as surely as a direct connection.
  const loop = recursionReason(ctx.state, ctx.nodeName, target);
  if (loop !== undefined) return { kind: 'reject', reason: loop, flag: 'RECURSION' };
  if (workload === undefined || !workload.captured) return { kind: 'tcp', target, dstWorkload: workload, service };
  if (workload.node === ctx.nodeName) return { kind: 'local', target, dstWorkload: workload, service };
  return {
    kind: 'hbone',
    target,
    // HBONE to the address the connection is for (of its family), as the destination node captures both.
    nextHop: { ip: workload.ips.includes(target.ip) ? target.ip : workload.ip, port: ctx.hbonePort },
    dstIdentities: [workload.identity],
    dstWorkload: workload,
    service,
  };
}

/**
 * The outer HBONE connection leaves from the client pod's own address of the next hop's family (a waypoint
 * that listens on one address only may be of the other family than the client's connection); with none of
 * that family, from the node's.
 */
export function outerSource(clientIp: string, clientIps: readonly string[], nextHopIp: string): string | undefined {
  const family = ipFamily(nextHopIp);
  return ipFamily(clientIp) === family ? clientIp : ipOfFamily(clientIps, family);
}
