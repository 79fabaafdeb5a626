// Starting ztunnel-ts processes and waiting for a log line: used by the demo and the CLI tests.
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { DAEMON_NODE_FLAGS } from '../cli/node-flags.js';

export const CLI = fileURLToPath(new URL('../cli/main.js', import.meta.url));

export interface Proc {
  readonly name: string;
  readonly child: ChildProcess;
  /** Every JSON log line so far. */
  readonly lines: Record<string, unknown>[];
  waitFor(pred: (line: Record<string, unknown>) => boolean, timeoutMs?: number): Promise<Record<string, unknown>>;
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

/** nodeArgs: node flags beyond the daemons' own, e.g. --cpu-prof for a benchmark's profile. */
export function startProcess(name: string, args: readonly string[], onLine?: (l: Record<string, unknown>) => void, nodeArgs: readonly string[] = []): Proc {
  const child = spawn(process.execPath, [...DAEMON_NODE_FLAGS, ...nodeArgs, CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  const lines: Record<string, unknown>[] = [];
  const waiters = new Set<() => void>();
  let stderr = '';
  child.stderr?.on('data', (c: Buffer) => (stderr += String(c)));
  createInterface({ input: child.stdout! }).on('line', (text) => {
    let line: Record<string, unknown>;
    try {
      line = JSON.parse(text) as Record<string, unknown>;
    } catch {
      line = { msg: text };
    }
    lines.push(line);
    onLine?.(line);
    for (const w of waiters) w();
  });
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  return {
    name,
    child,
    lines,
    waitFor: (pred, timeoutMs = 15_000) =>
      new Promise((resolve, reject) => {
        const check = (): void => {
          const hit = lines.find(pred);
          if (hit !== undefined) {
            waiters.delete(check);
            clearTimeout(timer);
            resolve(hit);
          }
        };
        const timer = setTimeout(() => {
          waiters.delete(check);
          reject(new Error(`${name}: no matching log line in ${timeoutMs} ms; stderr: ${stderr.slice(-500)}`));
        }, timeoutMs);
        waiters.add(check);
        void exited.then(() => {
          if (waiters.has(check)) {
            waiters.delete(check);
            clearTimeout(timer);
            reject(new Error(`${name} exited; stderr: ${stderr.slice(-500)}`));
          }
        });
        check();
      }),
    stop: async (signal = 'SIGTERM') => {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      return exited;
    },
  };
}
