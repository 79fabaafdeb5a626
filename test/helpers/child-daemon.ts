// A node daemon in a process of its own (`ztunnel-ts run`), for faults an in-process App cannot have:
// SIGKILL (the kernel closes its sockets) and SIGSTOP (its sockets stay open and nobody answers).
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { DAEMON_NODE_FLAGS } from '../../src/cli/node-flags.js';

const MAIN = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));

export interface ChildDaemon {
  readonly proc: ChildProcess;
  /** Resolves when the process has exited (by any signal or code). */
  readonly exited: Promise<void>;
  kill(signal: NodeJS.Signals): void;
}

export interface ChildDaemonOptions {
  readonly node: string;
  readonly manifests: string;
  readonly caDir: string;
  readonly extraArgs?: readonly string[];
}

/** Starts `ztunnel-ts run` and resolves once it logged that it is ready. */
export async function startChildDaemon(o: ChildDaemonOptions): Promise<ChildDaemon> {
  const args = [...DAEMON_NODE_FLAGS, MAIN, 'run', '--node', o.node, '--manifests', o.manifests, '--ca-dir', o.caDir, '--log-format', 'json'];
  args.push('--admin', '127.0.0.1:0', '--metrics', '127.0.0.1:0', '--readiness', '127.0.0.1:0', '--drain-seconds', '1', ...(o.extraArgs ?? []));
  const proc = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  const exited = once(proc, 'exit').then(() => undefined);
  // A test that ends without its teardown (a failed assertion in setup, a timeout) must not leave a
  // daemon holding the test's addresses for the next run.
  const orphanGuard = (): void => void proc.kill('SIGKILL');
  process.once('exit', orphanGuard);
  void exited.then(() => process.off('exit', orphanGuard));
  let stderr = '';
  proc.stderr?.on('data', (c: Buffer) => (stderr += String(c)));
  await new Promise<void>((resolve, reject) => {
    let buffered = '';
    const onData = (c: Buffer): void => {
      buffered += String(c);
      if (buffered.includes('"msg":"ztunnel-ts ready"')) {
        proc.stdout?.off('data', onData);
        proc.stdout?.resume();
        resolve();
      }
    };
    proc.stdout?.on('data', onData);
    void exited.then(() => reject(new Error(`daemon ${o.node} exited before it was ready: ${stderr}`)));
  });
  return {
    proc,
    exited,
    kill: (signal) => {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal);
    },
  };
}
