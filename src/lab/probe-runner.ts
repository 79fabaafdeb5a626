// Running the probe tool (src/lab/probe.ts) inside lab pods: used by the demo and the lab tests.
import { spawn, spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { findPod } from './lab.js';

export const PROBE = fileURLToPath(new URL('./probe.js', import.meta.url));

function podArgs(pod: string, args: readonly string[]): string[] {
  return [`--net=/run/netns/${findPod(pod).netns}`, process.execPath, PROBE, ...args];
}

/** Runs the probe in a pod and returns the last line it printed. */
export function probeInPod(pod: string, ...args: string[]): string {
  const r = spawnSync('nsenter', podArgs(pod, args), { encoding: 'utf8', timeout: 60_000 });
  return r.stdout.trim().split('\n').at(-1) ?? `${r.stderr}`;
}

/** Starts `probe serve` (echo :8080 or echoPort, whoami :9000) in each pod; they end with `lab down`. */
export function startProbeServers(pods: readonly string[], echoPort = 8080): void {
  for (const pod of pods) spawn('nsenter', podArgs(pod, ['serve', String(echoPort)]), { stdio: 'ignore', detached: true }).unref();
}

/** Starts `probe http-serve NAME` (HTTP on :9080) in each pod; they end with `lab down`. */
export function startHttpServers(servers: Readonly<Record<string, string>>): void {
  for (const [pod, name] of Object.entries(servers)) spawn('nsenter', podArgs(pod, ['http-serve', name]), { stdio: 'ignore', detached: true }).unref();
}

/** A long-running probe (e.g. `hold`) whose output the caller reads. */
export function spawnProbe(pod: string, ...args: string[]): ReturnType<typeof spawn> {
  return spawn('nsenter', podArgs(pod, args), { stdio: ['ignore', 'pipe', 'inherit'] });
}
