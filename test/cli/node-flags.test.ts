// Whether a daemon runs with the GC flags it is measured with: from its command line or NODE_OPTIONS.
import t from 'tap';
import { DAEMON_NODE_FLAGS, missingNodeFlags } from '../../src/cli/node-flags.js';

t.same(missingNodeFlags([...DAEMON_NODE_FLAGS], undefined), [], 'all on the command line');
t.same(missingNodeFlags([], DAEMON_NODE_FLAGS.join(' ')), [], 'all in NODE_OPTIONS');
t.same(missingNodeFlags(['--single_threaded_gc'], undefined), [], "V8's underscore spelling counts");
t.same(missingNodeFlags(['--enable-source-maps'], ''), [...DAEMON_NODE_FLAGS], 'none');
t.same(missingNodeFlags(['--single-threaded-gc=false'], undefined), ['--single-threaded-gc'], 'a flag given another value is not the measured one');
