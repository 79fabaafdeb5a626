// `lab up --kube`: a real control plane (etcd, kube-apiserver, kube-controller-manager) in the fabric
// namespace, holding the lab's objects. There is no kubelet, so the lab plays its part: it writes each
// pod's status (Running, Ready, its IP) and each node's addresses. Every daemon, the CA and the waypoints
// then run in --kube mode with ServiceAccount tokens from TokenRequest, bound to their pods.
import { spawnSync } from 'node:child_process';
import { readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';
import {
  adminKubeconfigPath, apiServerArgs, controllerManagerArgs, etcdArgs, tokenKubeconfig, writeControlPlaneFiles, type ControlPlaneLayout,
} from './control-plane.js';
import { goTool } from './go-tools.js';
import { FABRIC_BRIDGE_IP, FABRIC_NETNS, SERVICE_CIDR, SERVICE_CIDR6, type LabNode, type LabPlan } from './plan.js';
import { LabError, alive, nsArgs, spawnDetachedIn } from './shell.js';

const INSTALL = fileURLToPath(new URL('../../../manifests/install/', import.meta.url));
/** The install manifests the lab applies: the namespace, the AuthorizationPolicy CRD and the RBAC. */
const INSTALL_FILES = ['00-namespace.yaml', '10-crd-authorizationpolicy.yaml', '20-rbac.yaml'];
const READY_TIMEOUT_MS = 120_000;
/** Lab tokens outlive any lab session (the daemons read them once). */
const TOKEN_DURATION = '720h';

export interface LabKube {
  readonly dir: string;
  /** The admin kubeconfig; use it from the fabric namespace (`ztunnel-ts lab kubectl`). */
  readonly kubeconfig: string;
  readonly pids: { readonly etcd: number; readonly apiserver: number; readonly controllerManager: number };
  readonly logs: string;
}

export const labControlPlaneLayout = (dir: string): ControlPlaneLayout => ({
  dir, apiHost: FABRIC_BRIDGE_IP, apiPort: 6443, etcdPort: 2379, etcdPeerPort: 2380, controllerManagerPort: 10257,
  // Dual stack (IPv4 first): Services are IPv4 unless they ask for IPv6 (lab up --dual-stack gives pods both).
  serviceCidr: `${SERVICE_CIDR},${SERVICE_CIDR6}`,
});

export const ztunnelPodName = (node: string): string => `ztunnel-${node}`;

let kubectlBin: string | undefined;

/** kubectl as admin, run inside the fabric namespace (the host's namespace cannot reach the lab). */
export function labKubectl(kube: Pick<LabKube, 'kubeconfig'>, args: readonly string[], stdin?: string): string {
  const r = labKubectlStatus(kube, args, stdin);
  if (r.status !== 0) throw new LabError(`kubectl ${args.join(' ')}: ${r.stderr.trim()}`);
  return r.stdout;
}

export function labKubectlStatus(kube: Pick<LabKube, 'kubeconfig'>, args: readonly string[], stdin?: string): { status: number; stdout: string; stderr: string } {
  kubectlBin ??= goTool('kubectl');
  const r = spawnSync('nsenter', nsArgs(FABRIC_NETNS, kubectlBin, ['--kubeconfig', kube.kubeconfig, ...args]), { encoding: 'utf8', input: stdin ?? '', timeout: 60_000 });
  return { status: r.status ?? -1, stdout: r.stdout, stderr: r.stderr ?? '' };
}

async function until(what: string, ok: () => boolean, pids: readonly number[], logs: string): Promise<void> {
  const deadline = Date.now() + READY_TIMEOUT_MS;
  while (!ok()) {
    const dead = pids.find((p) => !alive(p));
    if (dead !== undefined) throw new LabError(`${what}: process ${dead} exited; see ${logs}`);
    if (Date.now() > deadline) throw new LabError(`${what}: not ready after ${READY_TIMEOUT_MS} ms; see ${logs}`);
    await new Promise((r) => setTimeout(r, 300));
  }
}

/** Starts etcd, kube-apiserver and kube-controller-manager in the fabric namespace; `started` records their pids at once. */
export async function startLabControlPlane(dir: string, started: (kube: LabKube) => void): Promise<LabKube> {
  const layout = labControlPlaneLayout(dir);
  const bins = { etcd: goTool('etcd'), apiserver: goTool('kube-apiserver'), kcm: goTool('kube-controller-manager') };
  writeControlPlaneFiles(layout);
  const log = (name: string): string => join(dir, `${name}.log`);
  const etcd = spawnDetachedIn(FABRIC_NETNS, bins.etcd, etcdArgs(layout), log('etcd'));
  const apiserver = spawnDetachedIn(FABRIC_NETNS, bins.apiserver, apiServerArgs(layout), log('kube-apiserver'));
  const kube: LabKube = { dir, kubeconfig: adminKubeconfigPath(layout), pids: { etcd, apiserver, controllerManager: 0 }, logs: dir };
  started(kube);
  await until('kube-apiserver', () => labKubectlStatus(kube, ['get', '--raw', '/readyz']).status === 0, [etcd, apiserver], dir);
  const controllerManager = spawnDetachedIn(FABRIC_NETNS, bins.kcm, controllerManagerArgs(layout), log('kube-controller-manager'));
  const full: LabKube = { ...kube, pids: { etcd, apiserver, controllerManager } };
  started(full);
  await waitForDefaultAccount(full, 'default');
  return full;
}

/** The ServiceAccount controller gives each namespace its "default" account; pods without one are refused. */
async function waitForDefaultAccount(kube: LabKube, namespace: string): Promise<void> {
  await until(`ServiceAccount ${namespace}/default`, () => labKubectlStatus(kube, ['-n', namespace, 'get', 'serviceaccount', 'default']).status === 0, Object.values(kube.pids), kube.logs);
}

type Obj = { kind?: string; metadata?: { name?: string; namespace?: string; labels?: Record<string, string> }; status?: unknown } & Record<string, unknown>;

/** The install manifests, the Gateway API CRDs, the lab's objects, and the status a kubelet would write. */
export async function loadLabObjects(kube: LabKube, plan: LabPlan): Promise<void> {
  const crds = goTool('gateway-api-crds');
  for (const f of INSTALL_FILES) labKubectl(kube, ['apply', '-f', '-'], readFileSync(join(INSTALL, f), 'utf8'));
  for (const f of readdirSync(crds).filter((x) => x.endsWith('.yaml')).sort()) labKubectl(kube, ['apply', '--server-side', '-f', '-'], readFileSync(join(crds, f), 'utf8'));
  labKubectl(kube, ['wait', '--for=condition=Established', '--timeout=60s', 'crd', '--all']);
  const objects = (plan.objects as Obj[]).map(({ status: _status, ...o }) => o);
  const namespaces = objects.filter((o) => o.kind === 'Namespace');
  if (namespaces.length > 0) labKubectl(kube, ['apply', '-f', '-'], documents(namespaces));
  for (const ns of ['istio-system', ...namespaces.map((o) => o.metadata?.name ?? '')]) await waitForDefaultAccount(kube, ns);
  // Pods last: admission refuses a pod whose ServiceAccount does not exist yet.
  labKubectl(kube, ['apply', '-f', '-'], documents(objects.filter((o) => o.kind !== 'Namespace' && o.kind !== 'Pod')));
  labKubectl(kube, ['apply', '-f', '-'], documents([...objects.filter((o) => o.kind === 'Pod'), ...plan.nodes.map(ztunnelPod)]));
  writeStatus(kube, plan);
}

const documents = (objects: readonly object[]): string => objects.map((o) => stringify(o)).join('---\n');

/** The node daemon as a pod object: a TokenRequest token can be bound to it, and the CA finds its node. */
function ztunnelPod(n: LabNode): Obj {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name: ztunnelPodName(n.name), namespace: 'istio-system', labels: { app: 'ztunnel' } },
    spec: { nodeName: n.name, hostNetwork: true, serviceAccountName: 'ztunnel', containers: [{ name: 'istio-proxy', image: 'ztunnel-ts:dev' }] },
  };
}

/** What a kubelet would report: pods Running and Ready with the lab's addresses, nodes Ready with theirs. */
function writeStatus(kube: LabKube, plan: LabPlan): void {
  const now = new Date().toISOString().replace(/\.\d+Z$/, 'Z');
  const condition = (type: string): Record<string, string> => ({ type, status: 'True', lastTransitionTime: now });
  const nodeIps = new Map(plan.nodes.map((n) => [n.name, [n.ip, ...(n.ip6 === undefined ? [] : [n.ip6])]]));
  const podIps = new Map<string, readonly string[]>([
    ...plan.pods.map((p) => [`${p.namespace}/${p.name}`, p.ips] as const),
    ...plan.nodes.map((n) => [`istio-system/${ztunnelPodName(n.name)}`, nodeIps.get(n.name) ?? []] as const),
  ]);
  type Item = { metadata: { name: string; namespace?: string }; spec?: { nodeName?: string; containers?: { name: string; image: string }[] }; status?: Record<string, unknown> };
  const pods = (JSON.parse(labKubectl(kube, ['get', 'pods', '--all-namespaces', '-o', 'json'])) as { items: Item[] }).items;
  const podItems = pods.flatMap((p) => {
    const ips = podIps.get(`${p.metadata.namespace ?? 'default'}/${p.metadata.name}`) ?? [];
    const hostIps = nodeIps.get(p.spec?.nodeName ?? '') ?? [];
    if (ips[0] === undefined || hostIps[0] === undefined) return [];
    const status = {
      phase: 'Running', podIP: ips[0], podIPs: ips.map((ip) => ({ ip })), hostIP: hostIps[0], hostIPs: hostIps.map((ip) => ({ ip })), startTime: now,
      conditions: ['PodScheduled', 'Initialized', 'ContainersReady', 'Ready'].map(condition),
      containerStatuses: (p.spec?.containers ?? []).map((c) => ({
        name: c.name, image: c.image, imageID: '', ready: true, started: true, restartCount: 0, state: { running: { startedAt: now } },
      })),
    };
    return [{ ...p, apiVersion: 'v1', kind: 'Pod', status }];
  });
  const nodes = (JSON.parse(labKubectl(kube, ['get', 'nodes', '-o', 'json'])) as { items: Item[] }).items;
  const nodeItems = nodes.flatMap((n) => {
    const ips = nodeIps.get(n.metadata.name) ?? [];
    if (ips.length === 0) return [];
    const ready = { ...condition('Ready'), lastHeartbeatTime: now, reason: 'KubeletReady', message: 'the lab plays the kubelet' };
    const addresses = [...ips.map((address) => ({ type: 'InternalIP', address })), { type: 'Hostname', address: n.metadata.name }];
    return [{ ...n, apiVersion: 'v1', kind: 'Node', status: { addresses, conditions: [ready] } }];
  });
  const list = { apiVersion: 'v1', kind: 'List', items: [...podItems, ...nodeItems] };
  labKubectl(kube, ['replace', '--subresource=status', '-f', '-'], JSON.stringify(list));
}

/** A TokenRequest token for a pod's ServiceAccount, bound to that pod; for the API server, or for the CA (audience istio-ca). */
export function podToken(kube: LabKube, pod: { namespace: string; name: string; serviceAccount: string }, audience?: string): string {
  return labKubectl(kube, [
    '-n', pod.namespace, 'create', 'token', pod.serviceAccount, `--duration=${TOKEN_DURATION}`,
    '--bound-object-kind=Pod', `--bound-object-name=${pod.name}`, ...(audience === undefined ? [] : [`--audience=${audience}`]),
  ]).trim();
}

/** Writes a kubeconfig for the pod's ServiceAccount and returns its path. */
export function podKubeconfig(kube: LabKube, pod: { namespace: string; name: string; serviceAccount: string }, path: string): string {
  writeFileSync(path, tokenKubeconfig(labControlPlaneLayout(kube.dir), `${pod.namespace}/${pod.serviceAccount}`, podToken(kube, pod)), { mode: 0o600 });
  return path;
}

/** A token for a ServiceAccount that is no pod (the lab's CA): not bound. */
export function accountKubeconfig(kube: LabKube, namespace: string, serviceAccount: string, path: string): string {
  const token = labKubectl(kube, ['-n', namespace, 'create', 'token', serviceAccount, `--duration=${TOKEN_DURATION}`]).trim();
  writeFileSync(path, tokenKubeconfig(labControlPlaneLayout(kube.dir), `${namespace}/${serviceAccount}`, token), { mode: 0o600 });
  return path;
}
