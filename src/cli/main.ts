#!/usr/bin/env -S node --v8-pool-size=1 --no-concurrent-marking --no-cppheap-concurrent-marking --no-parallel-scavenge
// ztunnel-ts command line: one file per verb; bad input exits 2 with one line.
import { Command, CommanderError } from 'commander';
import { EXIT_USAGE, isInputError } from './usage-error.js';

const program = new Command('ztunnel-ts')
  .description('per-node zero-trust L4 tunnel (HBONE over mTLS) for Kubernetes')
  .exitOverride()
  .configureOutput({ outputError: (str, write) => write(str.split('\n')[0] + '\n') });

// One module per verb, loaded only for the verb given (all of them for help): the daemon's process then
// carries neither the CA's X.509 and JWT code nor the lab's nor the waypoint's (about 10 MB of RSS).
type Register = (program: Command) => void;
const VERBS: Readonly<Record<string, () => Promise<Register>>> = {
  run: async () => (await import('./run.js')).registerRun,
  ca: async () => (await import('./ca.js')).registerCa,
  authz: async () => (await import('./authz.js')).registerAuthz,
  route: async () => (await import('./route.js')).registerRoute,
  lab: async () => (await import('./lab.js')).registerLab,
  observe: async () => (await import('./observe.js')).registerObserve,
  waypoint: async () => (await import('./waypoint.js')).registerWaypoint,
};
const verb = process.argv[2] ?? '';
const chosen = VERBS[verb];
for (const load of Object.hasOwn(VERBS, verb) && chosen !== undefined ? [chosen] : Object.values(VERBS)) (await load())(program);

try {
  await program.parseAsync(process.argv);
} catch (err) {
  if (err instanceof CommanderError) {
    process.exit(err.exitCode === 0 ? 0 : EXIT_USAGE);
  }
  if (isInputError(err)) {
    process.stderr.write(`ztunnel-ts: ${err.message}\n`);
    process.exit(EXIT_USAGE);
  }
  process.stderr.write(`ztunnel-ts: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
}
