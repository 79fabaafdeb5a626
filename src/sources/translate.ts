// The one translation from Kubernetes objects to the model, shared by local and cluster mode.
import { identityToString } from '../model/identity.js';
import type { NamespaceInfo, NodeInfo, Service, Snapshot, StoredPolicy, Workload } from '../model/types.js';
import type { EndpointSliceObject, KubeObject, NodeObject, PodObject, ServiceObject } from './kube-schema.js';

export const DATAPLANE_MODE_LABEL = 'istio.io/dataplane-mode';
export const AMBIENT = 'ambient';

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
  for (const pod of pods) {
    const w = podToWorkload(pod, namespaces, opts);
    if (w !== undefined) workloads.push(w);
  }
  return {
    namespaces: [...namespaces.values()],
    workloads,
    services: services.map((svc) => serviceToModel(svc, slices)),
    nodes,
    policies,
  };
}

/** Pods without an IP or a node are not workloads yet; host-network pods are never captured. */
function podToWorkload(
  pod: PodObject,
  namespaces: ReadonlyMap<string, NamespaceInfo>,
  opts: TranslateOptions,
): Workload | undefined {
  const ip = pod.status?.podIP;
  const node = pod.spec.nodeName;
  if (ip === undefined || node === undefined || pod.spec.hostNetwork === true) return undefined;
  const namespace = pod.metadata.namespace ?? 'default';
  const labels = pod.metadata.labels ?? {};
  const serviceAccount = pod.spec.serviceAccountName ?? 'default';
  const nsAmbient = namespaces.get(namespace)?.labels[DATAPLANE_MODE_LABEL] === AMBIENT;
  const optedOut = labels[DATAPLANE_MODE_LABEL] === 'none';
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
    serviceAccount,
    identity: identityToString({ trustDomain: opts.trustDomain, namespace, serviceAccount }),
    labels,
    captured: nsAmbient && !optedOut,
    namedPorts,
  };
}

const SERVICE_NAME_LABEL = 'kubernetes.io/service-name';

function serviceToModel(svc: ServiceObject, slices: readonly EndpointSliceObject[]): Service {
  const namespace = svc.metadata.namespace ?? 'default';
  // Only services without a selector take their endpoints from EndpointSlices (as kube-proxy would).
  const endpointIps =
    svc.spec.selector !== undefined
      ? []
      : slices
          .filter((s) => (s.metadata.namespace ?? 'default') === namespace && s.metadata.labels?.[SERVICE_NAME_LABEL] === svc.metadata.name && s.addressType !== 'FQDN')
          .flatMap((s) => (s.endpoints ?? []).filter((e) => e.conditions?.ready !== false).flatMap((e) => e.addresses));
  const clusterIP = svc.spec.clusterIP;
  return {
    uid: `${namespace}/${svc.metadata.name}`,
    name: svc.metadata.name,
    namespace,
    vip: clusterIP === undefined || clusterIP === 'None' ? undefined : clusterIP,
    ports: svc.spec.ports.map((p) => ({ name: p.name, port: p.port, targetPort: p.targetPort ?? p.port })),
    selector: svc.spec.selector,
    endpointIps,
    labels: svc.metadata.labels ?? {},
  };
}

function nodeInfo(node: NodeObject): NodeInfo {
  const internal = node.status?.addresses?.find((a) => a.type === 'InternalIP');
  return { name: node.metadata.name, ip: internal?.address };
}
