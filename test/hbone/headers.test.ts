// HBONE request headers that peers parse: traceparent in W3C form, unique across the id pool's refills; baggage.
import t from 'tap';
import { newTraceparent, parseBaggage } from '../../src/hbone/headers.js';

t.test('traceparent: W3C version 00, 32 + 16 hex digits, not sampled, never repeated', async (t) => {
  const seen = new Set<string>();
  for (let i = 0; i < 1000; i++) seen.add(newTraceparent()); // several pool refills
  t.equal(seen.size, 1000, 'no id repeated');
  t.ok([...seen].every((v) => /^00-[0-9a-f]{32}-[0-9a-f]{16}-00$/.test(v)), 'every one well formed');
});

t.test('regression (fuzzing): baggage entries without a name are skipped, and __proto__ is a plain entry', async (t) => {
  const b = parseBaggage('k8s.namespace.name=shop,   =x,=y,__proto__=z, k8s.pod.name = client ');
  t.same(Object.keys(b), ['k8s.namespace.name', '__proto__', 'k8s.pod.name'], 'no empty name');
  t.equal(b['k8s.pod.name'], 'client', 'names and values trimmed');
  t.equal(Object.getPrototypeOf(b), Object.prototype, "a peer's __proto__ entry does not replace the object's prototype");
  t.equal(Object.getOwnPropertyDescriptor(b, '__proto__')?.value, 'z', 'it is an own entry');
});
