// A real Kubernetes control plane on loopback for the tests: etcd, kube-apiserver and kube-controller-manager
// built from their Go modules by scripts/go-tool.sh (cached outside the repository), RBAC on, a static admin token,
// ServiceAccount signing keys (TokenRequest and TokenReview work). No kubelet: tests write pod status.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { once } from 'node:events';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const GO_TOOL = fileURLToPath(new URL('../../../scripts/go-tool.sh', import.meta.url));
export const ADMIN_TOKEN = 'ztunnel-ts-test-admin';

/** Path of a tool from the cache; builds it when Go is there. undefined only when Go is missing. */
function tool(name: string): string | undefined {
  const r = spawnSync('bash', [GO_TOOL, name], { encoding: 'utf8', timeout: 3_600_000 });
  if (r.status === 3) return undefined; // no Go on this machine
  if (r.status !== 0) throw new Error(`scripts/go-tool.sh ${name} failed: ${r.stderr.split('\n').slice(-5).join('\n')}`);
  return r.stdout.trim();
}

/** Why the control-plane tests cannot run here, if they cannot. */
export function controlPlaneSkipReason(): string | undefined {
  return spawnSync('go', ['version']).status === 0 ? undefined : 'needs Go to build etcd and kube-apiserver (scripts/go-tool.sh); CI has it';
}

async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise((r) => s.close(r));
  return port;
}

export interface ControlPlane {
  readonly kubeconfig: string;
  readonly apiUrl: string;
  /** Runs kubectl against this control plane; stdin is optional YAML. Throws with its stderr on failure. */
  kubectl(args: readonly string[], stdin?: string): string;
  /** kubectl's exit status and output, for commands whose "no" is an answer (auth can-i). */
  kubectlStatus(args: readonly string[]): { status: number; stdout: string };
  /** Stops kube-apiserver (the daemons keep what they have); start it again with startApiServer(). */
  stopApiServer(): Promise<void>;
  startApiServer(): Promise<void>;
  /** Compacts etcd's history up to now, so that watches from older resource versions get 410 Gone. */
  compact(): Promise<void>;
  close(): Promise<void>;
}

async function waitUntil(what: string, ok: () => Promise<boolean>, ms: number, proc?: ChildProcess, log?: () => string): Promise<void> {
  const deadline = Date.now() + ms;
  for (;;) {
    if (await ok().catch(() => false)) return;
    if (proc !== undefined && proc.exitCode !== null) throw new Error(`${what}: process exited ${proc.exitCode}\n${log?.() ?? ''}`);
    if (Date.now() > deadline) throw new Error(`${what}: not ready in ${ms} ms\n${log?.() ?? ''}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

export async function startControlPlane(): Promise<ControlPlane> {
  const etcdBin = tool('etcd');
  const apiserverBin = tool('kube-apiserver');
  const kubectlBin = tool('kubectl');
  const kcmBin = tool('kube-controller-manager');
  if (etcdBin === undefined || apiserverBin === undefined || kubectlBin === undefined || kcmBin === undefined) throw new Error('Go is missing');
  const dir = mkdtempSync(join(tmpdir(), 'ztunnel-ts-k8s-'));
  const [etcdPort, peerPort, apiPort] = [await freePort(), await freePort(), await freePort()];
  const etcdUrl = `http://127.0.0.1:${etcdPort}`;
  const procs: ChildProcess[] = [];
  const logs = new Map<ChildProcess, string>();
  const run = (bin: string, args: string[]): ChildProcess => {
    const p = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    logs.set(p, '');
    const keep = (c: Buffer): void => void logs.set(p, ((logs.get(p) ?? '') + String(c)).slice(-8000));
    p.stdout?.on('data', keep);
    p.stderr?.on('data', keep);
    procs.push(p);
    return p;
  };
  const etcd = run(etcdBin, [
    '--name', 'test', '--data-dir', join(dir, 'etcd'), '--unsafe-no-fsync',
    '--listen-client-urls', etcdUrl, '--advertise-client-urls', etcdUrl,
    '--listen-peer-urls', `http://127.0.0.1:${peerPort}`, '--initial-advertise-peer-urls', `http://127.0.0.1:${peerPort}`,
    '--initial-cluster', `test=http://127.0.0.1:${peerPort}`,
  ]);
  await waitUntil('etcd', async () => (await fetch(`${etcdUrl}/health`)).ok, 30_000, etcd, () => logs.get(etcd) ?? '');

  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  writeFileSync(join(dir, 'sa.key'), privateKey.export({ type: 'pkcs8', format: 'pem' }));
  writeFileSync(join(dir, 'sa.pub'), publicKey.export({ type: 'spki', format: 'pem' }));
  writeFileSync(join(dir, 'tokens.csv'), `${ADMIN_TOKEN},admin,admin,system:masters\n`);
  const apiUrl = `https://127.0.0.1:${apiPort}`;
  const apiArgs = [
    '--etcd-servers', etcdUrl, '--bind-address', '127.0.0.1', '--advertise-address', '127.0.0.1', '--secure-port', String(apiPort),
    '--cert-dir', join(dir, 'certs'), '--token-auth-file', join(dir, 'tokens.csv'), '--authorization-mode', 'RBAC',
    '--service-account-issuer', 'https://kubernetes.default.svc.cluster.local',
    '--service-account-key-file', join(dir, 'sa.pub'), '--service-account-signing-key-file', join(dir, 'sa.key'),
    '--api-audiences', 'https://kubernetes.default.svc.cluster.local', '--service-cluster-ip-range', '10.96.0.0/16',
    '--allow-privileged=true', '--endpoint-reconciler-type', 'none',
  ];
  let apiserver: ChildProcess | undefined;
  // kube-apiserver writes a self-signed certificate for 127.0.0.1, with the CA that signed it, to cert-dir.
  const caFile = join(dir, 'certs', 'apiserver.crt');
  const ready = (): Promise<boolean> =>
    new Promise((resolve) => {
      if (!existsSync(caFile)) return resolve(false);
      const req = https.get(`${apiUrl}/readyz`, { ca: readFileSync(caFile), headers: { authorization: `Bearer ${ADMIN_TOKEN}` } }, (res) => {
        res.resume();
        resolve(res.statusCode === 200);
      });
      req.on('error', () => resolve(false));
    });
  const startApiServer = async (): Promise<void> => {
    const p = run(apiserverBin, apiArgs);
    apiserver = p;
    await waitUntil('kube-apiserver', ready, 90_000, p, () => logs.get(p) ?? '');
  };
  await startApiServer();

  const kubeconfig = join(dir, 'kubeconfig');
  // Real controllers: the ServiceAccount controller makes every namespace's "default" account, the
  // EndpointSlice controller fills Services' slices, the namespace controller really deletes namespaces.
  const kcmPort = await freePort();
  const startControllers = (): void => {
    run(kcmBin, [
      '--kubeconfig', kubeconfig, '--leader-elect=false', '--use-service-account-credentials=false',
      '--service-account-private-key-file', join(dir, 'sa.key'), '--root-ca-file', caFile,
      '--bind-address', '127.0.0.1', '--secure-port', String(kcmPort), '--controllers', '*,-nodeipam,-nodelifecycle',
    ]);
  };
  writeFileSync(
    kubeconfig,
    `apiVersion: v1
kind: Config
clusters: [{ name: test, cluster: { server: "${apiUrl}", certificate-authority: "${caFile}" } }]
users: [{ name: admin, user: { token: ${ADMIN_TOKEN} } }]
contexts: [{ name: test, context: { cluster: test, user: admin } }]
current-context: test
`,
  );
  startControllers();
  const kubectlStatus = (args: readonly string[], stdin?: string): { status: number; stdout: string; stderr: string } => {
    const r = spawnSync(kubectlBin, ['--kubeconfig', kubeconfig, ...args], { encoding: 'utf8', input: stdin ?? '', timeout: 60_000 });
    return { status: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
  };
  // Ready for tests once the ServiceAccount controller has made the default namespace's account.
  await waitUntil('kube-controller-manager', async () => kubectlStatus(['get', 'serviceaccount', 'default']).status === 0, 60_000);
  return {
    kubeconfig,
    apiUrl,
    kubectl: (args, stdin) => {
      const r = kubectlStatus(args, stdin);
      if (r.status !== 0) throw new Error(`kubectl ${args.join(' ')}: ${r.stderr.trim()}`);
      return r.stdout;
    },
    kubectlStatus: (args) => kubectlStatus(args),
    stopApiServer: async () => {
      const p = apiserver;
      if (p === undefined || p.exitCode !== null) return;
      p.kill('SIGTERM');
      await once(p, 'exit');
    },
    startApiServer,
    compact: async () => {
      const range = (await (await fetch(`${etcdUrl}/v3/kv/range`, { method: 'POST', body: JSON.stringify({ key: Buffer.from('/').toString('base64') }) })).json()) as {
        header: { revision: string };
      };
      const r = await fetch(`${etcdUrl}/v3/kv/compaction`, { method: 'POST', body: JSON.stringify({ revision: range.header.revision, physical: true }) });
      if (!r.ok) throw new Error(`etcd compaction: ${r.status} ${await r.text()}`);
    },
    close: async () => {
      for (const p of procs.reverse()) {
        if (p.exitCode === null && p.signalCode === null) {
          p.kill('SIGKILL');
          await once(p, 'exit');
        }
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
