#!/usr/bin/env -S node --single-threaded-gc --max-semi-space-size=32
// ztunnel-ts command line: one file per verb; bad input exits 2 with one line.
import { Command, CommanderError } from 'commander';
import { registerAuthz } from './authz.js';
import { registerCa } from './ca.js';
import { registerLab } from './lab.js';
import { registerObserve } from './observe.js';
import { registerRoute } from './route.js';
import { registerRun } from './run.js';
import { registerWaypoint } from './waypoint.js';
import { EXIT_USAGE, isInputError } from './usage-error.js';

const program = new Command('ztunnel-ts')
  .description('per-node zero-trust L4 tunnel (HBONE over mTLS) for Kubernetes')
  .exitOverride()
  .configureOutput({ outputError: (str, write) => write(str.split('\n')[0] + '\n') });

registerRun(program);
registerCa(program);
registerAuthz(program);
registerRoute(program);
registerLab(program);
registerObserve(program);
registerWaypoint(program);

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
