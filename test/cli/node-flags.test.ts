// Whether a daemon runs with the GC flags it is measured with: from its command line or NODE_OPTIONS.
import t from 'tap';
import { DAEMON_NODE_FLAGS, missingNodeFlags } from '../../src/cli/node-flags.js';

t.same(missingNodeFlags([...DAEMON_NODE_FLAGS], undefined), [], 'all on the command line');
t.same(missingNodeFlags([], DAEMON_NODE_FLAGS.join(' ')), [], 'all in NODE_OPTIONS');
t.same(missingNodeFlags(['--v8_pool_size=1', '--no_concurrent_marking', '--no-cppheap_concurrent_marking', '--no_parallel_scavenge'], undefined), [], 'the underscore spelling counts');
t.same(missingNodeFlags(['--enable-source-maps'], ''), [...DAEMON_NODE_FLAGS], 'none');
t.same(missingNodeFlags([...DAEMON_NODE_FLAGS.filter((f) => !f.startsWith('--v8-pool-size')), '--v8-pool-size=4'], undefined), ['--v8-pool-size=1'], 'a flag given another value is not the measured one');
