// The one translation from Kubernetes objects to the model, shared by local and cluster mode.
import { canonicalIp } from '../model/address.js';
import { identityToString } from '../model/identity.js';
import type { HttpRoute, Labels, NamespaceInfo, NodeInfo, Service, Snapshot, StoredPolicy, Waypoint, Workload } from '../model/types.js';
import { NO_LOCALITY, nodeLocality, podHealth, sliceEndpointHealth } from './endpoint-health.js';
import type { EndpointSliceObject, GatewayObject, HttpRouteObject, KubeObject, NodeObject, PodObject, ServiceObject } from './kube-schema.js';

export const DATAPLANE_MODE_LABEL = 'istio.io/dataplane-mode';
export const AMBIENT = 'ambient';
export const USE_WAYPOINT_LABEL = 'istio.io/use-waypoint';
export const USE_WAYPOINT_NAMESPACE_LABEL = 'istio.io/use-waypoint-namespace';
export const WAYPOINT_FOR_LABEL = 'istio.io/waypoint-for';
export const GATEWAY_NAME_LABEL = 'gateway.networking.k8s.io/gateway-name';
export const WAYPOINT_CLASS = 'istio-waypoint';

export interface TranslateOptions {
  readonly trustDomain: string;
}

/** An object with where it was read from, so later stages can name it in errors. */
export interface SourcedObject {
  readonly origin: string;
  readonly object: KubeObject;
}

export function translate(objects: readonly SourcedObject[], opts: TranslateOptions): Snapshot {
  const namespaces = new Map<string, NamespaceInfo>();
  const pods: PodObject[] = [];
  const services: ServiceObject[] = [];
  const nodes: NodeInfo[] = [];
  const policies: StoredPolicy[] = [];
  const slices: EndpointSliceObject[] = [];
  const waypoints = new Map<string, Waypoint>();
  const routes: { origin: string; object: HttpRouteObject }[] = [];

  for (const { origin, object } of objects) {
    switch (object.kind) {
      case 'Namespace':
        namespaces.set(object.metadata.name, { name: object.metadata.name, labels: object.metadata.labels ?? {} });
        break;
      case 'Pod':
        pods.push(object);
        break;
      case 'Service':
        services.push(object);
        break;
      case 'Node':
        nodes.push(nodeInfo(object));
        break;
      case 'EndpointSlice':
        slices.push(object);
        break;
      case 'Gateway': {
        const w = gatewayToWaypoint(object);
        if (w !== undefined) waypoints.set(w.uid, w);
        break;
      }
      case 'HTTPRoute':
        routes.push({ origin, object });
        break;
      case 'AuthorizationPolicy':
        policies.push({
          namespace: object.metadata.namespace ?? 'default',
          name: object.metadata.name,
          origin,
          object: object as unknown as Record<string, unknown>,
        });
        break;
    }
  }

  const workloads: Workload[] = [];
  const nodeByName = new Map(nodes.map((n) => [n.name, n]));
  for (const pod of pods) {
    const w = podToWorkload(pod, namespaces, waypoints, nodeByName, opts);
    if (w !== undefined) workloads.push(w);
  }
  return {
    namespaces: [...namespaces.values()],
    workloads,
    services: services.map((svc) => serviceToModel(svc, slices, namespaces, waypoints)),
    nodes,
    policies,
    waypoints: [...waypoints.values()],
    httpRoutes: routes.map((r) => httpRouteToModel(r.object, r.origin)),
  };
}

function gatewayToWaypoint(gw: GatewayObject): Waypoint | undefined {
  if (gw.spec.gatewayClassName !== WAYPOINT_CLASS) return undefined;
  const namespace = gw.metadata.namespace ?? 'default';
  const t = gw.metadata.labels?.[WAYPOINT_FOR_LABEL];
  const trafficType = t === 'workload' || t === 'all' || t === 'none' ? t : 'service';
  return { uid: `${namespace}/${gw.metadata.name}`, name: gw.metadata.name, namespace, trafficType };
}

/**
 * Which waypoint an object's traffic goes through, as istiod decides it: the object's own
 * istio.io/use-waypoint label wins over its namespace's ("none" opts out); the waypoint must exist and
 * take this kind of traffic (istio.io/waypoint-for).
 */
function waypointFor(
  labels: Labels,
  namespace: string,
  namespaces: ReadonlyMap<string, NamespaceInfo>,
  waypoints: ReadonlyMap<string, Waypoint>,
  kind: 'service' | 'workload',
): string | undefined {
  const nsLabels = namespaces.get(namespace)?.labels ?? {};
  const from = labels[USE_WAYPOINT_LABEL] !== undefined ? labels : nsLabels;
  const name = from[USE_WAYPOINT_LABEL];
  if (name === undefined || name === 'none' || name === '') return undefined;
  const wp = waypoints.get(`${from[USE_WAYPOINT_NAMESPACE_LABEL] ?? namespace}/${name}`);
  if (wp === undefined || !(wp.trafficType === 'all' || wp.trafficType === kind)) return undefined;
  return wp.uid;
}

/** Pods without an IP or a node are not workloads yet; host-network pods are never captured. */
function podToWorkload(
  pod: PodObject,
  namespaces: ReadonlyMap<string, NamespaceInfo>,
  waypoints: ReadonlyMap<string, Waypoint>,
  nodes: ReadonlyMap<string, NodeInfo>,
  opts: TranslateOptions,
): Workload | undefined {
  const ips = podAddresses(pod);
  const ip = ips[0];
  const node = pod.spec.nodeName;
  if (ip === undefined || node === undefined || pod.spec.hostNetwork === true) return undefined;
  const namespace = pod.metadata.namespace ?? 'default';
  const labels = pod.metadata.labels ?? {};
  const serviceAccount = pod.spec.serviceAccountName ?? 'default';
  const nsAmbient = namespaces.get(namespace)?.labels[DATAPLANE_MODE_LABEL] === AMBIENT;
  const optedOut = labels[DATAPLANE_MODE_LABEL] === 'none';
  // A waypoint's own pods serve HBONE themselves: capturing them would loop their traffic through ztunnel.
  const gatewayName = labels[GATEWAY_NAME_LABEL];
  const implementsWaypoint = gatewayName !== undefined && waypoints.has(`${namespace}/${gatewayName}`) ? `${namespace}/${gatewayName}` : undefined;
  const namedPorts: Record<string, number> = {};
  for (const c of pod.spec.containers ?? []) {
    for (const p of c.ports ?? []) if (p.name !== undefined) namedPorts[p.name] = p.containerPort;
  }
  return {
    uid: `${namespace}/${pod.metadata.name}`,
    name: pod.metadata.name,
    namespace,
    node,
    ip,
    ips,
    serviceAccount,
    identity: identityToString({ trustDomain: opts.trustDomain, namespace, serviceAccount }),
    labels,
    captured: nsAmbient && !optedOut && implementsWaypoint === undefined,
    namedPorts,
    waypoint: implementsWaypoint === undefined ? waypointFor(labels, namespace, namespaces, waypoints, 'workload') : undefined,
    implementsWaypoint,
    health: podHealth(pod),
    locality: nodes.get(node)?.locality ?? NO_LOCALITY,
  };
}

/** status.podIP first, then the other family's address from status.podIPs (dual stack). */
function podAddresses(pod: PodObject): string[] {
  const primary = pod.status?.podIP ?? pod.status?.podIPs?.[0]?.ip;
  if (primary === undefined) return [];
  return [primary, ...(pod.status?.podIPs ?? []).map((p) => p.ip).filter((ip) => ip !== primary)];
}

/** spec.clusterIP first, then the rest of spec.clusterIPs; none for a headless Service. */
function clusterAddresses(svc: ServiceObject): string[] {
  const primary = svc.spec.clusterIP ?? svc.spec.clusterIPs?.[0];
  if (primary === undefined || primary === 'None') return [];
  return [primary, ...(svc.spec.clusterIPs ?? []).filter((ip) => ip !== primary && ip !== 'None')];
}

const SERVICE_NAME_LABEL = 'kubernetes.io/service-name';

function serviceToModel(
  svc: ServiceObject,
  slices: readonly EndpointSliceObject[],
  namespaces: ReadonlyMap<string, NamespaceInfo>,
  waypoints: ReadonlyMap<string, Waypoint>,
): Service {
  const namespace = svc.metadata.namespace ?? 'default';
  // Only services without a selector take their endpoints from EndpointSlices (as kube-proxy would).
  const sliceEndpoints =
    svc.spec.selector !== undefined
      ? []
      : slices
          .filter((s) => (s.metadata.namespace ?? 'default') === namespace && s.metadata.labels?.[SERVICE_NAME_LABEL] === svc.metadata.name && s.addressType !== 'FQDN')
          .flatMap((s) => (s.endpoints ?? []).flatMap((e) => e.addresses.flatMap((text) => {
            const ip = canonicalIp(text);
            return ip === undefined ? [] : [{ ip, health: sliceEndpointHealth(e) }];
          })));
  const distribution = svc.spec.trafficDistribution;
  const affinity = svc.spec.sessionAffinity === 'ClientIP';
  const vips = clusterAddresses(svc);
  return {
    uid: `${namespace}/${svc.metadata.name}`,
    name: svc.metadata.name,
    namespace,
    vip: vips[0],
    vips,
    ports: svc.spec.ports.map((p) => ({ name: p.name, port: p.port, targetPort: p.targetPort ?? p.port, appProtocol: p.appProtocol })),
    selector: svc.spec.selector,
    sliceEndpoints,
    trafficDistribution: distribution === 'PreferClose' || distribution === 'PreferSameZone' || distribution === 'PreferSameNode' ? distribution : undefined,
    internalTrafficPolicy: svc.spec.internalTrafficPolicy === 'Local' ? 'Local' : 'Cluster',
    // Kubernetes' default timeout for ClientIP affinity is three hours.
    sessionAffinity: affinity ? { timeoutSeconds: svc.spec.sessionAffinityConfig?.clientIP?.timeoutSeconds ?? 10_800 } : undefined,
    labels: svc.metadata.labels ?? {},
    waypoint: waypointFor(svc.metadata.labels ?? {}, namespace, namespaces, waypoints, 'service'),
  };
}

const SUPPORTED_FILTERS = new Set(['RequestHeaderModifier']);

function httpRouteToModel(route: HttpRouteObject, origin: string): HttpRoute {
  const namespace = route.metadata.namespace ?? 'default';
  const parents: HttpRoute['parents'][number][] = [];
  for (const p of route.spec.parentRefs) {
    const kind = p.kind ?? 'Gateway';
    const group = p.group ?? (kind === 'Service' ? '' : 'gateway.networking.k8s.io');
    if (kind === 'Service' && (group === '' || group === 'core')) parents.push({ kind, namespace: p.namespace ?? namespace, name: p.name, port: p.port });
    else if (kind === 'Gateway' && group === 'gateway.networking.k8s.io') parents.push({ kind, namespace: p.namespace ?? namespace, name: p.name, port: p.port });
  }
  return {
    uid: `${namespace}/${route.metadata.name}`,
    namespace,
    name: route.metadata.name,
    origin,
    parents,
    hostnames: route.spec.hostnames ?? [],
    rules: (route.spec.rules ?? []).map((rule, index) => {
      const unsupported: string[] = [];
      let requestHeaders: HttpRoute['rules'][number]['requestHeaders'];
      for (const f of rule.filters ?? []) {
        if (!SUPPORTED_FILTERS.has(f.type)) unsupported.push(`filter ${f.type}`);
        else if (f.requestHeaderModifier !== undefined) {
          const m = f.requestHeaderModifier;
          requestHeaders = { set: m.set ?? [], add: m.add ?? [], remove: m.remove ?? [] };
        }
      }
      const backends = (rule.backendRefs ?? []).flatMap((b) => {
        const kind = b.kind ?? 'Service';
        if (kind !== 'Service' || (b.group ?? '') !== '') {
          unsupported.push(`backendRef kind ${b.group ?? ''}/${kind}`);
          return [];
        }
        // The Gateway API allows this only with a ReferenceGrant from the other namespace, not read here.
        if (b.namespace !== undefined && b.namespace !== namespace) {
          unsupported.push(`backendRef to namespace ${b.namespace} (needs a ReferenceGrant, which is not supported)`);
          return [];
        }
        return [{ namespace: b.namespace ?? namespace, name: b.name, port: b.port, weight: b.weight ?? 1 }];
      });
      return {
        index,
        matches: (rule.matches ?? []).map((m) => ({
          path: m.path === undefined ? undefined : { type: m.path.type ?? 'PathPrefix', value: m.path.value ?? '/' },
          headers: (m.headers ?? []).map((h) => ({ type: h.type ?? 'Exact', name: h.name.toLowerCase(), value: h.value })),
          queryParams: (m.queryParams ?? []).map((q) => ({ type: q.type ?? 'Exact', name: q.name, value: q.value })),
          method: m.method,
        })),
        backends,
        requestHeaders,
        unsupportedFilters: unsupported,
      };
    }),
  };
}

function nodeInfo(node: NodeObject): NodeInfo {
  // A dual-stack node lists an InternalIP of each family.
  const ips = (node.status?.addresses ?? []).filter((a) => a.type === 'InternalIP').flatMap((a) => canonicalIp(a.address) ?? []);
  return { name: node.metadata.name, ip: ips[0], ips, locality: nodeLocality(node) };
}
