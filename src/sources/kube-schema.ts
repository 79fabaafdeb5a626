// The subset of Kubernetes objects the daemon reads, validated so that a bad value is reported with its
// field path instead of surfacing later as a broken connection.
import { z } from 'zod';
import { canonicalIp, ipFamily } from '../model/address.js';

const labels = z.record(z.string(), z.string());
/** An IP address, read into its canonical form (RFC 5952 for IPv6) so that every spelling matches. */
const ip = z.string().transform((v, ctx) => {
  const c = canonicalIp(v);
  if (c !== undefined) return c;
  ctx.addIssue({ code: 'custom', message: 'not an IP address' });
  return z.NEVER;
});

/** A list of addresses with at most one of each family, as Kubernetes allows for pods and Services. */
function oneOfEachFamily<T>(list: readonly T[], address: (item: T) => string, ctx: z.RefinementCtx): void {
  const seen = new Set<number>();
  list.forEach((item, i) => {
    const a = address(item);
    if (a === 'None') return;
    const family = ipFamily(a);
    if (seen.has(family)) ctx.addIssue({ code: 'custom', path: [i], message: `a second IPv${family} address (at most one of each family)` });
    seen.add(family);
  });
}
const port = z.number().int().min(1).max(65535);

const metadata = z.object({
  name: z.string().min(1),
  namespace: z.string().min(1).optional(),
  labels: labels.optional(),
  annotations: labels.optional(),
  /** Set when the object is being deleted: a pod is then terminating. */
  deletionTimestamp: z.string().nullish(),
});

export const namespaceSchema = z.object({
  apiVersion: z.literal('v1'),
  kind: z.literal('Namespace'),
  metadata,
});

export const podSchema = z.object({
  apiVersion: z.literal('v1'),
  kind: z.literal('Pod'),
  metadata,
  spec: z.object({
    nodeName: z.string().min(1).optional(),
    serviceAccountName: z.string().min(1).optional(),
    hostNetwork: z.boolean().optional(),
    containers: z
      .array(
        z.object({
          name: z.string(),
          ports: z.array(z.object({ name: z.string().optional(), containerPort: port })).optional(),
        }),
      )
      .optional(),
  }),
  status: z
    .object({
      podIP: ip.optional(),
      /** Dual stack: one address of each family; podIPs[0] is podIP. */
      podIPs: z
        .array(z.object({ ip }))
        .superRefine((l, ctx) => oneOfEachFamily(l, (x) => x.ip, ctx))
        .nullish(),
      phase: z.enum(['Pending', 'Running', 'Succeeded', 'Failed', 'Unknown']).optional(),
      conditions: z.array(z.object({ type: z.string(), status: z.enum(['True', 'False', 'Unknown']), reason: z.string().nullish(), message: z.string().nullish() })).nullish(),
    })
    .optional(),
});

export const serviceSchema = z.object({
  apiVersion: z.literal('v1'),
  kind: z.literal('Service'),
  metadata,
  spec: z.object({
    clusterIP: z.union([z.literal('None'), ip]).optional(),
    /** Dual stack: one cluster IP of each family, in the order of ipFamilies; clusterIPs[0] is clusterIP. */
    clusterIPs: z
      .array(z.union([z.literal('None'), ip]))
      .superRefine((l, ctx) => oneOfEachFamily(l, (x) => x, ctx))
      .nullish(),
    ipFamilies: z.array(z.enum(['IPv4', 'IPv6'])).max(2).nullish(),
    ipFamilyPolicy: z.enum(['SingleStack', 'PreferDualStack', 'RequireDualStack']).nullish(),
    selector: labels.optional(),
    /** Kubernetes 1.31+: PreferClose; 1.33+: PreferSameZone, PreferSameNode. Others are ignored, as by kube-proxy. */
    trafficDistribution: z.string().nullish(),
    internalTrafficPolicy: z.enum(['Cluster', 'Local']).nullish(),
    sessionAffinity: z.enum(['None', 'ClientIP']).nullish(),
    sessionAffinityConfig: z.object({ clientIP: z.object({ timeoutSeconds: z.number().int().min(1).max(86400).nullish() }).nullish() }).nullish(),
    ports: z
      .array(
        z.object({
          name: z.string().optional(),
          port,
          targetPort: z.union([port, z.string().min(1)]).optional(),
          protocol: z.enum(['TCP', 'UDP', 'SCTP']).optional(),
          appProtocol: z.string().min(1).optional(),
        }),
      )
      .min(1),
  }),
});

export const nodeSchema = z.object({
  apiVersion: z.literal('v1'),
  kind: z.literal('Node'),
  metadata,
  status: z
    .object({ addresses: z.array(z.object({ type: z.string(), address: z.string() })).optional() })
    .optional(),
});

/** Endpoints of services without a selector (label kubernetes.io/service-name names the service). */
export const endpointSliceSchema = z.object({
  apiVersion: z.literal('discovery.k8s.io/v1'),
  kind: z.literal('EndpointSlice'),
  metadata,
  addressType: z.enum(['IPv4', 'IPv6', 'FQDN']),
  endpoints: z
    .array(
      z.object({
        addresses: z.array(z.string()),
        conditions: z.object({ ready: z.boolean().nullish(), serving: z.boolean().nullish(), terminating: z.boolean().nullish() }).nullish(),
        nodeName: z.string().nullish(),
        zone: z.string().nullish(),
      }),
    )
    .nullish(),
});

/** Policies are stored as written; src/authz validates and translates their spec. */
export const authorizationPolicySchema = z.looseObject({
  apiVersion: z.enum(['security.istio.io/v1', 'security.istio.io/v1beta1']),
  kind: z.literal('AuthorizationPolicy'),
  metadata,
  spec: z.record(z.string(), z.unknown()).nullish(),
});

const gatewayApiVersion = z.enum(['gateway.networking.k8s.io/v1', 'gateway.networking.k8s.io/v1beta1']);

/** Gateways are read for their class: those of class istio-waypoint are waypoints, the rest are ignored. */
export const gatewaySchema = z.object({
  apiVersion: gatewayApiVersion,
  kind: z.literal('Gateway'),
  metadata,
  spec: z.object({ gatewayClassName: z.string().min(1) }),
});

const nameValueMatch = z.strictObject({ type: z.enum(['Exact', 'RegularExpression']).optional(), name: z.string().min(1), value: z.string() });

const httpRouteMatch = z.strictObject({
  path: z.strictObject({ type: z.enum(['Exact', 'PathPrefix', 'RegularExpression']).optional(), value: z.string().startsWith('/').optional() }).optional(),
  headers: z.array(nameValueMatch).optional(),
  queryParams: z.array(nameValueMatch).optional(),
  method: z.enum(['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'CONNECT', 'OPTIONS', 'TRACE', 'PATCH']).optional(),
});

const headerPair = z.strictObject({ name: z.string().min(1), value: z.string() });

const httpRouteFilter = z.looseObject({
  type: z.string().min(1),
  requestHeaderModifier: z
    .strictObject({ set: z.array(headerPair).optional(), add: z.array(headerPair).optional(), remove: z.array(z.string().min(1)).optional() })
    .optional(),
});

/** parentRefs and backendRefs: a reference to another object, optionally to one of its ports. */
const objectRef = {
  group: z.string().optional(),
  kind: z.string().optional(),
  name: z.string().min(1),
  namespace: z.string().min(1).optional(),
  port: port.optional(),
};

export const httpRouteSchema = z.object({
  apiVersion: gatewayApiVersion,
  kind: z.literal('HTTPRoute'),
  metadata,
  spec: z.object({
    parentRefs: z.array(z.strictObject({ ...objectRef, sectionName: z.string().optional() })).min(1),
    hostnames: z.array(z.string().min(1)).optional(),
    rules: z
      .array(
        z.strictObject({
          name: z.string().optional(),
          matches: z.array(httpRouteMatch).optional(),
          filters: z.array(httpRouteFilter).optional(),
          backendRefs: z.array(z.strictObject({ ...objectRef, weight: z.number().int().min(0).max(1_000_000).optional() })).optional(),
          timeouts: z.strictObject({ request: z.string().optional(), backendRequest: z.string().optional() }).optional(),
        }),
      )
      .optional(),
  }),
});

export type GatewayObject = z.infer<typeof gatewaySchema>;
export type HttpRouteObject = z.infer<typeof httpRouteSchema>;

export type NamespaceObject = z.infer<typeof namespaceSchema>;
export type PodObject = z.infer<typeof podSchema>;
export type ServiceObject = z.infer<typeof serviceSchema>;
export type NodeObject = z.infer<typeof nodeSchema>;
export type AuthorizationPolicyObject = z.infer<typeof authorizationPolicySchema>;

export type EndpointSliceObject = z.infer<typeof endpointSliceSchema>;

export type KubeObject =
  | NamespaceObject
  | PodObject
  | ServiceObject
  | NodeObject
  | AuthorizationPolicyObject
  | EndpointSliceObject
  | GatewayObject
  | HttpRouteObject;

const schemas = {
  Namespace: namespaceSchema,
  Pod: podSchema,
  Service: serviceSchema,
  Node: nodeSchema,
  AuthorizationPolicy: authorizationPolicySchema,
  EndpointSlice: endpointSliceSchema,
  Gateway: gatewaySchema,
  HTTPRoute: httpRouteSchema,
} as const;

export type KnownKind = keyof typeof schemas;

export function isKnownKind(kind: unknown): kind is KnownKind {
  return typeof kind === 'string' && Object.hasOwn(schemas, kind);
}

export type ValidationResult = { ok: true; object: KubeObject } | { ok: false; field: string; message: string };

/** Validates one object of a known kind; on failure gives the first bad field as a dotted path. */
export function validateObject(kind: KnownKind, raw: unknown): ValidationResult {
  const result = schemas[kind].safeParse(raw);
  if (result.success) return { ok: true, object: result.data as KubeObject };
  const issue = result.error.issues[0];
  return {
    ok: false,
    field: issue === undefined ? '' : formatPath(issue.path),
    message: issue?.message ?? 'invalid object',
  };
}

export function formatPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const p of path) {
    if (typeof p === 'number') out += `[${p}]`;
    else out += out === '' ? String(p) : `.${String(p)}`;
  }
  return out;
}

/** "Kind namespace/name" for messages, from whatever the raw object has. */
export function describeObject(raw: unknown): string {
  const o = (raw ?? {}) as { kind?: unknown; metadata?: { name?: unknown; namespace?: unknown } };
  const kind = typeof o.kind === 'string' ? o.kind : 'object';
  const name = typeof o.metadata?.name === 'string' ? o.metadata.name : '<unnamed>';
  const ns = typeof o.metadata?.namespace === 'string' ? `${o.metadata.namespace}/` : '';
  return `${kind} ${ns}${name}`;
}
