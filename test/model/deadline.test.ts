// Each connection's connect bound: it must fire like AbortSignal.timeout, and be gone when the wait ends.
import { setTimeout as sleep } from 'node:timers/promises';
import t from 'tap';
import { deadline, withDeadline } from '../../src/model/deadline.js';

const timers = (): number => process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;

t.test('aborts after its time with a TimeoutError, as AbortSignal.timeout does', async (t) => {
  const d = deadline(20);
  t.equal(d.signal.aborted, false);
  await sleep(60);
  t.equal(d.signal.aborted, true);
  t.equal((d.signal.reason as Error).name, 'TimeoutError');
  d.done();
});

t.test('done() ends the timer: 1000 finished waits leave no timer behind and never abort', async (t) => {
  const before = timers();
  const bounds = Array.from({ length: 1000 }, () => deadline(30));
  t.ok(timers() > before, 'the waits have timers while they last');
  for (const b of bounds) b.done();
  t.equal(timers(), before);
  await sleep(60);
  t.equal(bounds.filter((b) => b.signal.aborted).length, 0);
});

t.test('a linked signal aborts it first, with that reason, and ends its timer', async (t) => {
  const cancel = new AbortController();
  const before = timers();
  const d = deadline(10_000, cancel.signal);
  cancel.abort(new Error('the client went away'));
  t.equal(d.signal.aborted, true);
  t.equal((d.signal.reason as Error).message, 'the client went away');
  t.equal(timers(), before);
});

t.test('an already aborted linked signal aborts it at once; after done() the link is cut', async (t) => {
  const gone = AbortSignal.abort(new Error('already'));
  t.equal((deadline(10_000, gone).signal.reason as Error).message, 'already');
  const cancel = new AbortController();
  const d = deadline(10_000, cancel.signal);
  d.done();
  cancel.abort();
  t.equal(d.signal.aborted, false, 'a wait that is over is not aborted by its old link');
});

t.test('withDeadline: the wait gets the signal; its result or error passes through; the timer goes with it', async (t) => {
  const before = timers();
  t.equal(await withDeadline(10_000, undefined, async (signal) => (signal.aborted ? 'aborted' : 'ok')), 'ok');
  await t.rejects(withDeadline(10_000, undefined, () => Promise.reject(new Error('refused'))), { message: 'refused' });
  t.equal(timers(), before);
  const timedOut = withDeadline(20, undefined, (signal) => new Promise((_, reject) => signal.addEventListener('abort', () => reject(signal.reason as Error))));
  await t.rejects(timedOut, { name: 'TimeoutError' });
});
