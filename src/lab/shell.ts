// Running ip/nsenter for the lab; every failure names the command.
import { execFileSync } from 'node:child_process';

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
