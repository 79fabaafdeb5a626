// The rapid-reset guard: how many streams reset before an answer a session may have in a window.
import t from 'tap';
import { ResetGuard } from '../../src/hbone/reset-guard.js';

t.test('trips past the limit within one window, and a new window starts over', async (t) => {
  const g = new ResetGuard(3, 1000);
  t.same([g.reset(0), g.reset(10), g.reset(20)], [false, false, false], 'up to the limit: fine');
  t.equal(g.reset(30), true, 'one more in the same window: the session must close');
  const h = new ResetGuard(3, 1000);
  for (const at of [0, 100, 200]) h.reset(at);
  t.equal(h.reset(1000), false, 'a reset in the next window counts from one');
  t.same([h.reset(1100), h.reset(1200)], [false, false]);
  t.equal(h.reset(1300), true);
});
