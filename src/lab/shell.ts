// Running ip/nsenter for the lab; every failure names the command.
import { execFileSync, spawn } from 'node:child_process';
import { openSync } from 'node:fs';

export class LabError extends Error {
  readonly code = 'LAB';

  constructor(message: string) {
    super(message);
    this.name = 'LabError';
  }
}

export function run(cmd: string, args: readonly string[], opts: { allowFail?: boolean } = {}): string {
  try {
    return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (err) {
    if (opts.allowFail === true) return '';
    const e = err as { stderr?: string; message: string };
    throw new LabError(`${cmd} ${args.join(' ')}: ${(e.stderr ?? e.message).trim()}`);
  }
}

/** Runs a command inside a named network namespace (nsenter keeps /sys, unlike `ip netns exec`). */
export function inNetns(netns: string, cmd: string, args: readonly string[], opts: { allowFail?: boolean } = {}): string {
  return run('nsenter', [`--net=/run/netns/${netns}`, cmd, ...args], opts);
}

export function nsArgs(netns: string, cmd: string, args: readonly string[]): string[] {
  return [`--net=/run/netns/${netns}`, cmd, ...args];
}

/** Starts a long-lived lab process inside a namespace, detached, its output appended to log; returns its pid. */
export function spawnDetachedIn(netns: string, cmd: string, args: readonly string[], log: string): number {
  const fd = openSync(log, 'a');
  const child = spawn('nsenter', nsArgs(netns, cmd, args), { detached: true, stdio: ['ignore', fd, fd] });
  child.unref();
  if (child.pid === undefined) throw new LabError(`could not start ${cmd} ${args.join(' ')} in ${netns}`);
  return child.pid;
}

/** Whether a process is still there (signal 0 only asks). */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
