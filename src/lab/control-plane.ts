// How a small real Kubernetes control plane is laid out and started: etcd, kube-apiserver with RBAC, a
// static admin token and ServiceAccount signing keys (TokenRequest and TokenReview work), and
// kube-controller-manager (ServiceAccounts, EndpointSlices, namespace deletion). Pure: files and argument
// lists. The tests start it on loopback as child processes; `lab up --kube` in the fabric namespace.
import { generateKeyPairSync } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export const ADMIN_TOKEN = 'ztunnel-ts-test-admin';
export const SERVICE_ACCOUNT_ISSUER = 'https://kubernetes.default.svc.cluster.local';

export interface ControlPlaneLayout {
  /** Holds etcd's data, the keys, the generated serving certificate and the kubeconfig. */
  readonly dir: string;
  /** Address kube-apiserver binds and advertises (its self-signed certificate names it). */
  readonly apiHost: string;
  readonly apiPort: number;
  readonly etcdPort: number;
  readonly etcdPeerPort: number;
  readonly controllerManagerPort: number;
  readonly serviceCidr: string;
}

export const etcdUrl = (l: ControlPlaneLayout): string => `http://127.0.0.1:${l.etcdPort}`;
export const apiUrl = (l: ControlPlaneLayout): string => `https://${l.apiHost}:${l.apiPort}`;
/** kube-apiserver writes a self-signed certificate for its address here; kubeconfigs trust it. */
export const apiServerCaFile = (l: ControlPlaneLayout): string => join(l.dir, 'certs', 'apiserver.crt');
export const adminKubeconfigPath = (l: ControlPlaneLayout): string => join(l.dir, 'kubeconfig');

/** The signing key pair and the static token file; the admin kubeconfig. */
export function writeControlPlaneFiles(l: ControlPlaneLayout): void {
  mkdirSync(l.dir, { recursive: true, mode: 0o700 });
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  writeFileSync(join(l.dir, 'sa.key'), privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
  writeFileSync(join(l.dir, 'sa.pub'), publicKey.export({ type: 'spki', format: 'pem' }));
  writeFileSync(join(l.dir, 'tokens.csv'), `${ADMIN_TOKEN},admin,admin,system:masters\n`, { mode: 0o600 });
  writeFileSync(adminKubeconfigPath(l), tokenKubeconfig(l, 'admin', ADMIN_TOKEN), { mode: 0o600 });
}

/** A kubeconfig for one bearer token (admin, or a ServiceAccount's TokenRequest token). */
export function tokenKubeconfig(l: ControlPlaneLayout, user: string, token: string): string {
  return `apiVersion: v1
kind: Config
clusters: [{ name: lab, cluster: { server: "${apiUrl(l)}", certificate-authority: "${apiServerCaFile(l)}" } }]
users: [{ name: "${user}", user: { token: "${token}" } }]
contexts: [{ name: lab, context: { cluster: lab, user: "${user}" } }]
current-context: lab
`;
}

export function etcdArgs(l: ControlPlaneLayout): string[] {
  const peer = `http://127.0.0.1:${l.etcdPeerPort}`;
  return [
    '--name', 'lab', '--data-dir', join(l.dir, 'etcd'), '--unsafe-no-fsync',
    '--listen-client-urls', etcdUrl(l), '--advertise-client-urls', etcdUrl(l),
    '--listen-peer-urls', peer, '--initial-advertise-peer-urls', peer, '--initial-cluster', `lab=${peer}`,
  ];
}

export function apiServerArgs(l: ControlPlaneLayout): string[] {
  return [
    '--etcd-servers', etcdUrl(l), '--bind-address', l.apiHost, '--advertise-address', l.apiHost, '--secure-port', String(l.apiPort),
    '--cert-dir', join(l.dir, 'certs'), '--token-auth-file', join(l.dir, 'tokens.csv'), '--authorization-mode', 'RBAC',
    '--service-account-issuer', SERVICE_ACCOUNT_ISSUER,
    '--service-account-key-file', join(l.dir, 'sa.pub'), '--service-account-signing-key-file', join(l.dir, 'sa.key'),
    '--api-audiences', SERVICE_ACCOUNT_ISSUER, '--service-cluster-ip-range', l.serviceCidr,
    '--allow-privileged=true', '--endpoint-reconciler-type', 'none',
  ];
}

/** No kubelet and no node IPAM here: the node lifecycle controller would taint and evict every pod. */
export function controllerManagerArgs(l: ControlPlaneLayout): string[] {
  return [
    '--kubeconfig', adminKubeconfigPath(l), '--leader-elect=false', '--use-service-account-credentials=false',
    '--service-account-private-key-file', join(l.dir, 'sa.key'), '--root-ca-file', apiServerCaFile(l),
    '--bind-address', '127.0.0.1', '--secure-port', String(l.controllerManagerPort), '--controllers', '*,-nodeipam,-nodelifecycle',
  ];
}
