// A real Kubernetes control plane on loopback for the tests: etcd, kube-apiserver and kube-controller-manager
// built from their Go modules by scripts/go-tool.sh (cached outside the repository), RBAC on, a static admin token,
// ServiceAccount signing keys (TokenRequest and TokenReview work). No kubelet: tests write pod status.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import https from 'node:https';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  ADMIN_TOKEN, adminKubeconfigPath, apiServerArgs, apiServerCaFile, apiUrl as apiUrlOf, controllerManagerArgs, etcdArgs, etcdUrl as etcdUrlOf,
  writeControlPlaneFiles, type ControlPlaneLayout,
} from '../../src/lab/control-plane.js';
import { goTool, goToolsMissingReason } from '../../src/lab/go-tools.js';

export { ADMIN_TOKEN };

/** Why the control-plane tests cannot run here, if they cannot. */
export const controlPlaneSkipReason = goToolsMissingReason;

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
  const [etcdBin, apiserverBin, kubectlBin, kcmBin] = (['etcd', 'kube-apiserver', 'kubectl', 'kube-controller-manager'] as const).map(goTool);
  const layout: ControlPlaneLayout = {
    dir: mkdtempSync(join(tmpdir(), 'ztunnel-ts-k8s-')), apiHost: '127.0.0.1',
    apiPort: await freePort(), etcdPort: await freePort(), etcdPeerPort: await freePort(), controllerManagerPort: await freePort(), serviceCidr: '10.96.0.0/16,fd00:10:96::/108',
  };
  const { dir } = layout;
  const etcdUrl = etcdUrlOf(layout);
  const apiUrl = apiUrlOf(layout);
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
  writeControlPlaneFiles(layout);
  const etcd = run(etcdBin as string, etcdArgs(layout));
  await waitUntil('etcd', async () => (await fetch(`${etcdUrl}/health`)).ok, 30_000, etcd, () => logs.get(etcd) ?? '');

  let apiserver: ChildProcess | undefined;
  const caFile = apiServerCaFile(layout);
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
    const p = run(apiserverBin as string, apiServerArgs(layout));
    apiserver = p;
    await waitUntil('kube-apiserver', ready, 90_000, p, () => logs.get(p) ?? '');
  };
  await startApiServer();
  const kubeconfig = adminKubeconfigPath(layout);
  run(kcmBin as string, controllerManagerArgs(layout));
  const kubectlStatus = (args: readonly string[], stdin?: string): { status: number; stdout: string; stderr: string } => {
    const r = spawnSync(kubectlBin as string, ['--kubeconfig', kubeconfig, ...args], { encoding: 'utf8', input: stdin ?? '', timeout: 60_000 });
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
