// The lab is one per machine (fixed state directory and namespace names): test files that build it take
// this lock first, so tap's parallel jobs run them one after another.
import { spawn, spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { readFileSync } from 'node:fs';
import type { Test } from 'tap';
import { labDown, labNetns, labUp, readLabState, type LabState, type UpOptions } from '../../src/lab/lab.js';

/** Why lab tests cannot run here, if they cannot. */
export const labSkipReason: string | undefined =
  process.getuid?.() !== 0
    ? 'needs root for network namespaces and eBPF (CI runs as root)'
    : spawnSync('nsenter', ['--version']).status !== 0
      ? 'needs nsenter (util-linux)'
      : undefined;

export async function waitFor(what: string, pred: () => boolean, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Prometheus text from 127.0.0.1:15020 inside a lab network namespace (a node's daemon, or a waypoint's pod). */
export function metricsIn(netns: string): string {
  const script = "fetch('http://127.0.0.1:15020/metrics').then(r=>r.text()).then(t=>process.stdout.write(t))";
  return spawnSync('nsenter', [`--net=/run/netns/${netns}`, process.execPath, '-e', script], { encoding: 'utf8' }).stdout;
}

/** JSON lines of a daemon's log file. */
export function logLines(file: string): Record<string, unknown>[] {
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

const LOCK = '/run/ztunnel-ts-lab.test-lock';
/** Takes the lab, builds it from manifests, and tears it down and frees it when the test ends. */
export async function exclusiveLab(t: Test, manifests: string, opts: UpOptions = {}): Promise<LabState> {
  const release = await acquireLab();
  if (labNetns().length > 0 || readLabState() !== undefined) await labDown();
  t.teardown(async () => {
    await labDown();
    release();
  });
  return labUp(manifests, opts);
}

/**
 * Waits for the lab to be free; returns the release function. The lock is the kernel's: flock(1) holds it
 * for as long as its stdin is open, so it is released when the test ends or when its process dies, and
 * two waiters can never both take it (the directory lock this replaces, with its check for a dead holder,
 * once let two test files build the lab at the same time in CI).
 */
async function acquireLab(timeoutMs = 600_000): Promise<() => void> {
  const holder = spawn('flock', ['--timeout', String(timeoutMs / 1000), LOCK, 'sh', '-c', 'echo locked; exec cat >/dev/null'], { stdio: ['pipe', 'pipe', 'inherit'] });
  const locked = await new Promise<boolean>((resolve) => {
    holder.stdout.once('data', () => resolve(true));
    holder.once('exit', () => resolve(false));
  });
  if (!locked) throw new Error(`the lab stayed busy for ${timeoutMs} ms (${LOCK})`);
  return () => holder.stdin.end();
}

const CLI = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));

/** Runs `observe --lab --json --namespace NS` until the test ends; returns the set of reporting nodes, filled as events come. */
export function observeLab(t: Test, namespace: string): Set<string> {
  const observe = spawn(process.execPath, [CLI, 'observe', '--lab', '--json', '--namespace', namespace], { stdio: ['ignore', 'pipe', 'inherit'] });
  t.teardown(() => observe.kill());
  const nodes = new Set<string>();
  let buffered = '';
  observe.stdout.on('data', (c: Buffer) => {
    buffered += String(c);
    const lines = buffered.split('\n');
    buffered = lines.pop() ?? '';
    for (const l of lines) nodes.add((JSON.parse(l) as { node: string }).node);
  });
  return nodes;
}
