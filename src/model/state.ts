// The State store: one immutable snapshot at a time, with indexes by IP, VIP, identity and node.
import { EventEmitter } from 'node:events';
import { EMPTY_SNAPSHOT, labelsMatch } from './types.js';
import type { HttpRoute, NodeInfo, Service, Snapshot, StoredPolicy, Waypoint, Workload } from './types.js';

export interface StateEvents {
  change: [snapshot: Snapshot];
}

/**
 * The workloads behind a selector-less Service's EndpointSlices; a dual-stack pod is listed in a slice of
 * each family, and is one endpoint (its first slice's conditions).
 */
function sliceWorkloads(s: Service, byIp: ReadonlyMap<string, Workload>): Workload[] {
  const seen = new Set<string>();
  return s.sliceEndpoints.flatMap(({ ip, health }) => {
    // The slice's conditions speak for the endpoint; its pod (if any) for who it is.
    const w = byIp.get(ip);
    if (w === undefined || seen.has(w.uid)) return [];
    seen.add(w.uid);
    return [{ ...w, health }];
  });
}

export class State extends EventEmitter<StateEvents> {
  #snapshot: Snapshot = EMPTY_SNAPSHOT;
  #byIp = new Map<string, Workload>();
  #byVip = new Map<string, Service>();
  #byIdentity = new Map<string, Workload[]>();
  #endpoints = new Map<string, Workload[]>();
  #nodes = new Map<string, NodeInfo>();
  #waypoints = new Map<string, Waypoint>();
  #waypointPods = new Map<string, Workload[]>();
  #services = new Map<string, Service>();
  #loaded = false;

  /** Replaces the whole view at once, so readers never see half an update. */
  replace(snapshot: Snapshot): void {
    const byIp = new Map<string, Workload>();
    const byIdentity = new Map<string, Workload[]>();
    for (const w of snapshot.workloads) {
      for (const ip of w.ips) byIp.set(ip, w);
      const list = byIdentity.get(w.identity) ?? [];
      list.push(w);
      byIdentity.set(w.identity, list);
    }
    const byVip = new Map<string, Service>();
    const endpoints = new Map<string, Workload[]>();
    for (const s of snapshot.services) {
      for (const vip of s.vips) byVip.set(vip, s);
      const selector = s.selector;
      endpoints.set(
        s.uid,
        selector === undefined
          ? sliceWorkloads(s, byIp)
          : snapshot.workloads.filter((w) => w.namespace === s.namespace && labelsMatch(selector, w.labels)),
      );
    }
    this.#snapshot = snapshot;
    this.#byIp = byIp;
    this.#byVip = byVip;
    this.#byIdentity = byIdentity;
    this.#endpoints = endpoints;
    this.#nodes = new Map(snapshot.nodes.map((n) => [n.name, n]));
    this.#waypoints = new Map(snapshot.waypoints.map((w) => [w.uid, w]));
    const waypointPods = new Map<string, Workload[]>();
    for (const w of snapshot.workloads) {
      if (w.implementsWaypoint === undefined) continue;
      waypointPods.set(w.implementsWaypoint, [...(waypointPods.get(w.implementsWaypoint) ?? []), w]);
    }
    this.#waypointPods = waypointPods;
    this.#services = new Map(snapshot.services.map((s) => [s.uid, s]));
    this.#loaded = true;
    this.emit('change', snapshot);
  }

  get loaded(): boolean {
    return this.#loaded;
  }

  get snapshot(): Snapshot {
    return this.#snapshot;
  }

  workloadByIp(ip: string): Workload | undefined {
    return this.#byIp.get(ip);
  }

  serviceByVip(ip: string): Service | undefined {
    return this.#byVip.get(ip);
  }

  workloadsWithIdentity(identity: string): readonly Workload[] {
    return this.#byIdentity.get(identity) ?? [];
  }

  workloadsOnNode(node: string): Workload[] {
    return this.#snapshot.workloads.filter((w) => w.node === node);
  }

  endpointsOf(service: Service): readonly Workload[] {
    return this.#endpoints.get(service.uid) ?? [];
  }

  node(name: string): NodeInfo | undefined {
    return this.#nodes.get(name);
  }

  serviceByName(namespace: string, name: string): Service | undefined {
    return this.#services.get(`${namespace}/${name}`);
  }

  waypoint(uid: string): Waypoint | undefined {
    return this.#waypoints.get(uid);
  }

  /** The pods that implement a waypoint (its endpoints for HBONE). */
  waypointPods(uid: string): readonly Workload[] {
    return this.#waypointPods.get(uid) ?? [];
  }

  get httpRoutes(): readonly HttpRoute[] {
    return this.#snapshot.httpRoutes;
  }

  get policies(): readonly StoredPolicy[] {
    return this.#snapshot.policies;
  }
}
