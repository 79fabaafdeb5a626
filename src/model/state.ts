// The State store: one immutable snapshot at a time, with indexes by IP, VIP, identity and node.
import { EventEmitter } from 'node:events';
import { EMPTY_SNAPSHOT, labelsMatch } from './types.js';
import type { NodeInfo, Service, Snapshot, StoredPolicy, Workload } from './types.js';

export interface StateEvents {
  change: [snapshot: Snapshot];
}

export class State extends EventEmitter<StateEvents> {
  #snapshot: Snapshot = EMPTY_SNAPSHOT;
  #byIp = new Map<string, Workload>();
  #byVip = new Map<string, Service>();
  #byIdentity = new Map<string, Workload[]>();
  #endpoints = new Map<string, Workload[]>();
  #nodes = new Map<string, NodeInfo>();
  #loaded = false;

  /** Replaces the whole view at once, so readers never see half an update. */
  replace(snapshot: Snapshot): void {
    const byIp = new Map<string, Workload>();
    const byIdentity = new Map<string, Workload[]>();
    for (const w of snapshot.workloads) {
      byIp.set(w.ip, w);
      const list = byIdentity.get(w.identity) ?? [];
      list.push(w);
      byIdentity.set(w.identity, list);
    }
    const byVip = new Map<string, Service>();
    const endpoints = new Map<string, Workload[]>();
    for (const s of snapshot.services) {
      if (s.vip !== undefined) byVip.set(s.vip, s);
      const selector = s.selector;
      endpoints.set(
        s.uid,
        selector === undefined
          ? s.endpointIps.flatMap((ip) => {
              const w = byIp.get(ip);
              return w === undefined ? [] : [w];
            })
          : snapshot.workloads.filter((w) => w.namespace === s.namespace && labelsMatch(selector, w.labels)),
      );
    }
    this.#snapshot = snapshot;
    this.#byIp = byIp;
    this.#byVip = byVip;
    this.#byIdentity = byIdentity;
    this.#endpoints = endpoints;
    this.#nodes = new Map(snapshot.nodes.map((n) => [n.name, n]));
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

  get policies(): readonly StoredPolicy[] {
    return this.#snapshot.policies;
  }
}
