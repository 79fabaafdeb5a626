// HBONE request headers that peers parse: traceparent in W3C form, unique across the id pool's refills.
import t from 'tap';
import { newTraceparent } from '../../src/hbone/headers.js';

t.test('traceparent: W3C version 00, 32 + 16 hex digits, not sampled, never repeated', async (t) => {
  const seen = new Set<string>();
  for (let i = 0; i < 1000; i++) seen.add(newTraceparent()); // several pool refills
  t.equal(seen.size, 1000, 'no id repeated');
  t.ok([...seen].every((v) => /^00-[0-9a-f]{32}-[0-9a-f]{16}-00$/.test(v)), 'every one well formed');
});
