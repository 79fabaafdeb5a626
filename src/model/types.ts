// The daemon's view of the cluster, independent of where it came from (manifests or the API server).

export type Labels = Readonly<Record<string, string>>;

/** Whether an endpoint may take new connections, with the Kubernetes meaning of EndpointSlice conditions. */
export interface EndpointHealth {
  /** Serving and not terminating: takes new connections. */
  readonly ready: boolean;
  /** Would pass its readiness check (also while terminating). */
  readonly serving: boolean;
  /** Being deleted (deletionTimestamp set). */
  readonly terminating: boolean;
  /** Why it is what it is, for config_dump and `route check`. */
  readonly reason: string;
}

/** From the node's topology.kubernetes.io/region and /zone labels. */
export interface Locality {
  readonly region: string | undefined;
  readonly zone: string | undefined;
}

export interface Workload {
  /** namespace/name, unique per pod. */
  readonly uid: string;
  readonly name: string;
  readonly namespace: string;
  readonly node: string;
  /** Its primary address (status.podIP). */
  readonly ip: string;
  /** Every address (status.podIPs): one per family on a dual-stack pod; ips[0] is ip. */
  readonly ips: readonly string[];
  readonly serviceAccount: string;
  /** SPIFFE URI of the workload's identity. */
  readonly identity: string;
  readonly labels: Labels;
  /** In the mesh: namespace labelled ambient and the pod not opted out. */
  readonly captured: boolean;
  /** Named container ports, for services whose targetPort is a name. */
  readonly namedPorts: Readonly<Record<string, number>>;
  /** "namespace/name" of the waypoint traffic addressed to this pod's IP goes through, if any. */
  readonly waypoint: string | undefined;
  /** "namespace/name" of the waypoint Gateway this pod implements (it is then never captured). */
  readonly implementsWaypoint: string | undefined;
  readonly health: EndpointHealth;
  /** Its node's locality. */
  readonly locality: Locality;
}

export interface ServicePort {
  readonly name: string | undefined;
  readonly port: number;
  readonly targetPort: number | string;
  /** spec.ports[].appProtocol: how a waypoint treats the port (http, http2, tcp…); undefined: detect. */
  readonly appProtocol: string | undefined;
}

export interface Service {
  readonly uid: string;
  readonly name: string;
  readonly namespace: string;
  /** Its primary cluster IP (spec.clusterIP). */
  readonly vip: string | undefined;
  /** Every cluster IP (spec.clusterIPs): one per family of a dual-stack Service; vips[0] is vip. */
  readonly vips: readonly string[];
  readonly ports: readonly ServicePort[];
  /** undefined: endpoints are not managed by a selector (see endpointIps). */
  readonly selector: Labels | undefined;
  /** For services without a selector: endpoint addresses from their EndpointSlices, with their conditions. */
  readonly sliceEndpoints: readonly { readonly ip: string; readonly health: EndpointHealth }[];
  /** spec.trafficDistribution, when it is one this daemon honours. */
  readonly trafficDistribution: 'PreferClose' | 'PreferSameZone' | 'PreferSameNode' | undefined;
  /** spec.internalTrafficPolicy: Local uses only endpoints on the client's node. */
  readonly internalTrafficPolicy: 'Cluster' | 'Local';
  /** spec.sessionAffinity ClientIP: a client sticks to one endpoint for this long. */
  readonly sessionAffinity: { readonly timeoutSeconds: number } | undefined;
  readonly labels: Labels;
  /** "namespace/name" of the waypoint traffic to this service's VIP goes through, if any. */
  readonly waypoint: string | undefined;
}

/** A waypoint: a Gateway of class istio-waypoint; its pods carry gateway.networking.k8s.io/gateway-name. */
export interface Waypoint {
  /** namespace/name */
  readonly uid: string;
  readonly name: string;
  readonly namespace: string;
  /** istio.io/waypoint-for: which traffic it takes (service by default, as in Istio). */
  readonly trafficType: 'service' | 'workload' | 'all' | 'none';
}

export type StringMatchType = 'Exact' | 'PathPrefix' | 'RegularExpression';

export interface HttpRouteMatch {
  readonly path: { readonly type: StringMatchType; readonly value: string } | undefined;
  readonly headers: readonly { readonly type: 'Exact' | 'RegularExpression'; readonly name: string; readonly value: string }[];
  readonly queryParams: readonly { readonly type: 'Exact' | 'RegularExpression'; readonly name: string; readonly value: string }[];
  readonly method: string | undefined;
}

export interface HttpBackendRef {
  readonly namespace: string;
  readonly name: string;
  readonly port: number | undefined;
  readonly weight: number;
}

export interface HeaderModifier {
  readonly set: readonly { readonly name: string; readonly value: string }[];
  readonly add: readonly { readonly name: string; readonly value: string }[];
  readonly remove: readonly string[];
}

export interface HttpRouteRule {
  readonly index: number;
  /** Empty: matches every request (the Gateway API default of one PathPrefix "/" match). */
  readonly matches: readonly HttpRouteMatch[];
  readonly backends: readonly HttpBackendRef[];
  readonly requestHeaders: HeaderModifier | undefined;
  /** Filters this waypoint cannot apply: requests the rule matches get 500 rather than a silent skip. */
  readonly unsupportedFilters: readonly string[];
}

/** An HTTPRoute (gateway.networking.k8s.io/v1) attached to Services (GAMMA) or to a waypoint Gateway. */
export interface HttpRoute {
  readonly uid: string;
  readonly namespace: string;
  readonly name: string;
  readonly origin: string;
  readonly parents: readonly { readonly kind: 'Service' | 'Gateway'; readonly namespace: string; readonly name: string; readonly port: number | undefined }[];
  readonly hostnames: readonly string[];
  readonly rules: readonly HttpRouteRule[];
}

export interface NodeInfo {
  readonly name: string;
  /** Its first InternalIP. */
  readonly ip: string | undefined;
  /** Every InternalIP (one per family on a dual-stack node). */
  readonly ips: readonly string[];
  readonly locality: Locality;
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
  readonly waypoints: readonly Waypoint[];
  readonly httpRoutes: readonly HttpRoute[];
}

export const EMPTY_SNAPSHOT: Snapshot = { namespaces: [], workloads: [], services: [], nodes: [], policies: [], waypoints: [], httpRoutes: [] };

export function labelsMatch(selector: Labels, labels: Labels): boolean {
  for (const [k, v] of Object.entries(selector)) if (labels[k] !== v) return false;
  return true;
}
