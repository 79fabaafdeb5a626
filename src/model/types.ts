// The daemon's view of the cluster, independent of where it came from (manifests or the API server).

export type Labels = Readonly<Record<string, string>>;

export interface Workload {
  /** namespace/name, unique per pod. */
  readonly uid: string;
  readonly name: string;
  readonly namespace: string;
  readonly node: string;
  readonly ip: string;
  readonly serviceAccount: string;
  /** SPIFFE URI of the workload's identity. */
  readonly identity: string;
  readonly labels: Labels;
  /** In the mesh: namespace labelled ambient and the pod not opted out. */
  readonly captured: boolean;
  /** Named container ports, for services whose targetPort is a name. */
  readonly namedPorts: Readonly<Record<string, number>>;
}

export interface ServicePort {
  readonly name: string | undefined;
  readonly port: number;
  readonly targetPort: number | string;
}

export interface Service {
  readonly uid: string;
  readonly name: string;
  readonly namespace: string;
  readonly vip: string | undefined;
  readonly ports: readonly ServicePort[];
  /** undefined: endpoints are not managed by a selector (see endpointIps). */
  readonly selector: Labels | undefined;
  /** For services without a selector: endpoint addresses from their EndpointSlices. */
  readonly endpointIps: readonly string[];
  readonly labels: Labels;
}

export interface NodeInfo {
  readonly name: string;
  readonly ip: string | undefined;
}

export interface NamespaceInfo {
  readonly name: string;
  readonly labels: Labels;
}

/** An AuthorizationPolicy as stored; translated by src/authz. */
export interface StoredPolicy {
  readonly namespace: string;
  readonly name: string;
  /** Where it came from (file path or "kube"), for error messages. */
  readonly origin: string;
  readonly object: Readonly<Record<string, unknown>>;
}

export interface Snapshot {
  readonly namespaces: readonly NamespaceInfo[];
  readonly workloads: readonly Workload[];
  readonly services: readonly Service[];
  readonly nodes: readonly NodeInfo[];
  readonly policies: readonly StoredPolicy[];
}

export const EMPTY_SNAPSHOT: Snapshot = { namespaces: [], workloads: [], services: [], nodes: [], policies: [] };

export function labelsMatch(selector: Labels, labels: Labels): boolean {
  for (const [k, v] of Object.entries(selector)) if (labels[k] !== v) return false;
  return true;
}
