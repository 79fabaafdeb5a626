// Pinned Go tools (etcd, kube-apiserver, kube-controller-manager, kubectl, the Gateway API CRDs) from
// scripts/go-tool.sh: built once into a cache outside the repository. For the lab and the tests only,
// never for the daemon.
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { LabError } from './shell.js';

const GO_TOOL = fileURLToPath(new URL('../../../scripts/go-tool.sh', import.meta.url));

export type GoTool = 'etcd' | 'kube-apiserver' | 'kube-controller-manager' | 'kubectl' | 'gateway-api-crds';

/** Why the Go tools cannot be had here, if they cannot. */
export function goToolsMissingReason(): string | undefined {
  return spawnSync('go', ['version']).status === 0 ? undefined : 'needs Go to build etcd and kube-apiserver (scripts/go-tool.sh); CI has it';
}

/** The tool's path in the cache; builds it first when needed (minutes, once). Throws saying why it cannot. */
export function goTool(name: GoTool): string {
  const r = spawnSync('bash', [GO_TOOL, name], { encoding: 'utf8', timeout: 3_600_000 });
  if (r.status === 3) throw new LabError(`Go is not installed: cannot build ${name} (scripts/go-tool.sh)`);
  if (r.status !== 0) throw new LabError(`scripts/go-tool.sh ${name} failed: ${r.stderr.split('\n').slice(-5).join('\n')}`);
  return r.stdout.trim();
}
