// The waypoint's --listen: one address, or one per address of a dual-stack pod.
import t from 'tap';
import { waypointConfigFromFlags } from '../../src/config/waypoint-config.js';

const base = { name: 'waypoint', namespace: 'app', manifests: 'm.yaml', caDir: '/tmp/ca' };

t.test('a comma-separated list listens on each, the first being its primary address', async (t) => {
  const c = waypointConfigFromFlags({ ...base, listen: '10.244.1.20:15008,[fd00:10:244:1::20]:15008' });
  t.same(c.listens, [{ host: '10.244.1.20', port: 15008 }, { host: 'fd00:10:244:1::20', port: 15008 }]);
  t.same(c.listen, { host: '10.244.1.20', port: 15008 });
  t.same(waypointConfigFromFlags(base).listens, [{ host: '0.0.0.0', port: 15008 }], 'by default a wildcard (both families)');
});

t.test('a bad entry is refused, naming it', async (t) => {
  t.throws(() => waypointConfigFromFlags({ ...base, listen: '10.244.1.20:15008,fd00::1:15008x' }), { message: /expected IP:PORT, got "fd00::1:15008x"/ });
});
