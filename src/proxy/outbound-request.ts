// The outbound routing decision, made before any I/O: where a captured connection goes and how.
import type { SocketAddress } from '../hbone/headers.js';
import type { State } from '../model/state.js';
import type { Service, Workload } from '../model/types.js';
import { recursionReason } from './recursion.js';

export type OutboundRequest =
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
  | { readonly kind: 'reject'; readonly reason: string; readonly flag: 'NO_HEALTHY_UPSTREAM' | 'RECURSION' | 'NO_SERVICE_PORT' };

export interface OutboundContext {
  readonly state: State;
  readonly nodeName: string;
  readonly hbonePort: number;
  /** Chooses among endpoints; random by default. */
  readonly pick?: <T>(items: readonly T[]) => T;
}

const randomPick = <T>(items: readonly T[]): T => items[Math.floor(Math.random() * items.length)] as T;

export function buildOutboundRequest(ctx: OutboundContext, src: Workload, dst: SocketAddress): OutboundRequest {
  // The source is a captured pod, so its own daemon ports are covered too.
  const loop = recursionReason(ctx.state, ctx.nodeName, dst);
  if (loop !== undefined) return { kind: 'reject', reason: loop, flag: 'RECURSION' };
  const service = ctx.state.serviceByVip(dst.ip);
  if (service !== undefined) {
    if (service.waypoint !== undefined && src.implementsWaypoint !== service.waypoint) {
      return viaWaypoint(ctx, service.waypoint, dst, service);
    }
    return viaService(ctx, service, dst);
  }
  const workload = ctx.state.workloadByIp(dst.ip);
  if (workload?.waypoint !== undefined && src.implementsWaypoint !== workload.waypoint) {
    return viaWaypoint(ctx, workload.waypoint, dst, undefined);
  }
  return toWorkload(ctx, workload, dst, undefined);
}

/**
 * L7 is required: HBONE to a pod of the waypoint, with :authority the address the client used (the VIP),
 * so the waypoint routes by service. With no waypoint pod the connection fails: going around the
 * waypoint would skip its policies.
 */
function viaWaypoint(ctx: OutboundContext, waypoint: string, dst: SocketAddress, service: Service | undefined): OutboundRequest {
  const pods = ctx.state.waypointPods(waypoint);
  if (pods.length === 0) {
    return { kind: 'reject', reason: `waypoint ${waypoint} has no pods`, flag: 'NO_HEALTHY_UPSTREAM' };
  }
  const pod = (ctx.pick ?? randomPick)(pods);
  return {
    kind: 'hbone',
    target: dst,
    nextHop: { ip: pod.ip, port: ctx.hbonePort },
    dstIdentities: [pod.identity],
    dstWorkload: pod,
    service,
    waypoint,
  };
}

function viaService(ctx: OutboundContext, service: Service, dst: SocketAddress): OutboundRequest {
  const port = service.ports.find((p) => p.port === dst.port);
  if (port === undefined) {
    return { kind: 'reject', reason: `service ${service.uid} has no port ${dst.port}`, flag: 'NO_SERVICE_PORT' };
  }
  const candidates: { w: Workload; port: number }[] = [];
  for (const w of ctx.state.endpointsOf(service)) {
    const target = typeof port.targetPort === 'number' ? port.targetPort : w.namedPorts[port.targetPort];
    if (target !== undefined) candidates.push({ w, port: target });
  }
  if (candidates.length === 0) {
    return { kind: 'reject', reason: `service ${service.uid} has no endpoints`, flag: 'NO_HEALTHY_UPSTREAM' };
  }
  const chosen = (ctx.pick ?? randomPick)(candidates);
  return toWorkload(ctx, chosen.w, { ip: chosen.w.ip, port: chosen.port }, service);
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
    nextHop: { ip: workload.ip, port: ctx.hbonePort },
    dstIdentities: [workload.identity],
    dstWorkload: workload,
    service,
  };
}
