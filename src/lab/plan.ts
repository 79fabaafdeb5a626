// What the lab builds from the manifests: nodes on the fabric (172.18.0.0/24), pods with addresses from
// their node's CIDR (10.244.N.0/24) where they have none, and network namespace and interface names.
// Dual stack adds IPv6 unique local addresses beside each: fd00:172:18::/64 on the fabric,
// fd00:10:244:N::/64 for node N's pods (a pod 10.244.N.H gets fd00:10:244:N::H), fd00:10:96::/108 for
// Services (written in the manifests).
import { readFileSync } from 'node:fs';
import { parseAllDocuments, stringify } from 'yaml';
import { listManifestFiles } from '../sources/manifests.js';
import { GATEWAY_NAME_LABEL, WAYPOINT_CLASS } from '../sources/translate.js';
import { LabError } from './shell.js';

export const NETNS_PREFIX = 'ztl-';
export const FABRIC_NETNS = `${NETNS_PREFIX}fabric`;
export const FABRIC_BRIDGE_IP = '172.18.0.1';
export const SERVICE_CIDR = '10.96.0.0/16';
export const FABRIC_BRIDGE_IP6 = 'fd00:172:18::1';
export const SERVICE_CIDR6 = 'fd00:10:96::/108';

export interface LabNode {
  readonly name: string;
  readonly index: number;
  readonly netns: string;
  readonly ip: string;
  readonly podCidr: string;
  /** Dual stack: the node's IPv6 address and its pods' IPv6 prefix. */
  readonly ip6?: string;
  readonly podCidr6?: string;
  /** Interface in the fabric netns, on the bridge. */
  readonly fabricIf: string;
}

export interface LabPod {
  readonly namespace: string;
  readonly name: string;
  readonly node: string;
  /** Its primary address (status.podIP). */
  readonly ip: string;
  /** Every address, one per family (status.podIPs). */
  readonly ips: readonly string[];
  readonly netns: string;
  /** Host-side veth in the node netns. */
  readonly hostIf: string;
  /** Set for a waypoint's pod: the lab runs `ztunnel-ts waypoint` in it. */
  readonly waypoint?: { readonly name: string; readonly serviceAccount: string };
}

export interface PlanOptions {
  /** Give nodes and pods an IPv6 address beside the IPv4 one (pods whose status names theirs keep them). */
  readonly dualStack?: boolean;
}

export interface LabPlan {
  readonly nodes: LabNode[];
  readonly pods: LabPod[];
  /** The manifests with pod IPs and node addresses filled in: what the daemons and the CA read. */
  readonly manifestText: string;
  /** The same objects, for `lab up --kube` to create. */
  readonly objects: readonly object[];
}

type Obj = {
  kind?: string;
  metadata?: { name?: string; namespace?: string; labels?: Record<string, string> };
  spec?: { nodeName?: string; serviceAccountName?: string; gatewayClassName?: string };
  status?: Record<string, unknown>;
};

/** A pod's addresses as its manifest gives them (status.podIP, then the rest of status.podIPs). */
function writtenPodIps(status: Record<string, unknown> | undefined): string[] {
  const primary = typeof status?.['podIP'] === 'string' ? status['podIP'] : undefined;
  const list = Array.isArray(status?.['podIPs']) ? (status['podIPs'] as { ip?: unknown }[]).flatMap((p) => (typeof p.ip === 'string' ? [p.ip] : [])) : [];
  const first = primary ?? list[0];
  return first === undefined ? [] : [first, ...list.filter((ip) => ip !== first)];
}

export function planLab(path: string, opts: PlanOptions = {}): LabPlan {
  const dual = opts.dualStack === true;
  const objects: Obj[] = [];
  for (const file of listManifestFiles(path)) {
    for (const doc of parseAllDocuments(readFileSync(file, 'utf8'))) {
      if (doc.errors.length > 0) throw new LabError(`${file}: ${doc.errors[0]?.message ?? 'bad YAML'}`);
      const o = doc.toJS() as Obj | null;
      if (o !== null && typeof o === 'object') objects.push(o);
    }
  }
  const nodeNames = new Set<string>();
  for (const o of objects) {
    if (o.kind === 'Node' && o.metadata?.name !== undefined) nodeNames.add(o.metadata.name);
    if (o.kind === 'Pod' && o.spec?.nodeName !== undefined) nodeNames.add(o.spec.nodeName);
  }
  const nodes = [...nodeNames].sort().map((name, i): LabNode => ({
    name,
    index: i + 1,
    netns: `${NETNS_PREFIX}${name}`.slice(0, 30),
    ip: `172.18.0.${10 + i + 1}`,
    podCidr: `10.244.${i + 1}.0/24`,
    ...(dual ? { ip6: `fd00:172:18::${10 + i + 1}`, podCidr6: `fd00:10:244:${i + 1}::/64` } : {}),
    fabricIf: `zf${i + 1}`,
  }));
  if (nodes.length === 0) throw new LabError(`${path}: no Node and no Pod with spec.nodeName`);
  const byName = new Map(nodes.map((n) => [n.name, n]));
  const nextHost = new Map(nodes.map((n) => [n.name, 10]));
  const waypoints = new Set(
    objects.filter((o) => o.kind === 'Gateway' && o.spec?.gatewayClassName === WAYPOINT_CLASS).map((o) => `${o.metadata?.namespace ?? 'default'}/${o.metadata?.name ?? ''}`),
  );
  const pods: LabPod[] = [];
  for (const o of objects) {
    if (o.kind !== 'Pod') continue;
    const node = byName.get(o.spec?.nodeName ?? '');
    if (node === undefined) throw new LabError(`Pod ${o.metadata?.namespace ?? 'default'}/${o.metadata?.name ?? '?'}: spec.nodeName is required in the lab`);
    const written = writtenPodIps(o.status);
    let ips = written;
    if (ips.length === 0) {
      const host = nextHost.get(node.name) ?? 10;
      nextHost.set(node.name, host + 1);
      ips = dual ? [`10.244.${node.index}.${host}`, `fd00:10:244:${node.index}::${host}`] : [`10.244.${node.index}.${host}`];
      o.status = { ...o.status, podIP: ips[0], podIPs: ips.map((ip) => ({ ip })) };
    }
    if (!dual && ips.some((ip) => ip.includes(':'))) throw new LabError(`Pod ${o.metadata?.namespace ?? 'default'}/${o.metadata?.name ?? '?'}: an IPv6 address needs a dual-stack lab (lab up --dual-stack)`);
    const ip = ips[0] as string;
    const i = pods.filter((p) => p.node === node.name).length + 1;
    const namespace = o.metadata?.namespace ?? 'default';
    const gateway = o.metadata?.labels?.[GATEWAY_NAME_LABEL];
    pods.push({
      namespace,
      name: o.metadata?.name ?? '',
      node: node.name,
      ip,
      ips,
      netns: `${NETNS_PREFIX}${node.index}-p${i}`,
      hostIf: `zp${i}`,
      ...(gateway !== undefined && waypoints.has(`${namespace}/${gateway}`)
        ? { waypoint: { name: gateway, serviceAccount: o.spec?.serviceAccountName ?? 'default' } }
        : {}),
    });
  }
  for (const n of nodes) {
    const existing = objects.find((o) => o.kind === 'Node' && o.metadata?.name === n.name);
    const status = { addresses: [n.ip, ...(n.ip6 === undefined ? [] : [n.ip6])].map((address) => ({ type: 'InternalIP', address })) };
    if (existing !== undefined) existing.status = status;
    else objects.push({ kind: 'Node', metadata: { name: n.name }, status, ...{ apiVersion: 'v1' } } as Obj);
  }
  return { nodes, pods, manifestText: objects.map((o) => stringify(o)).join('---\n'), objects };
}
