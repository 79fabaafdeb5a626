// The TypeScript mirrors of bpf/lib/maps.h must match it byte for byte.
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { STAT_NAMES, encodeConfig, ipKey } from '../../src/datapath/capture-program.js';

const header = readFileSync(fileURLToPath(new URL('../../../bpf/lib/maps.h', import.meta.url)), 'utf8');

t.test('struct capture_config: 16 bytes, ports as u16 host order, marks as u32', async (t) => {
  const b = encodeConfig({ outboundPort: 15001, inboundPlainPort: 15006, hbonePort: 15008, daemonMark: 0x539, assignMark: 0x400 });
  t.equal(b.length, 16);
  t.same([b.readUInt16LE(0), b.readUInt16LE(2), b.readUInt16LE(4), b.readUInt32LE(8), b.readUInt32LE(12)], [15001, 15006, 15008, 0x539, 0x400]);
  const fields = /struct capture_config \{([\s\S]*?)\};/.exec(header)?.[1] ?? '';
  t.same([...fields.matchAll(/__u(16|32) (\w+);/g)].map((m) => `${m[2]}:${m[1]}`), [
    'outbound_port:16', 'inbound_plain_port:16', 'hbone_port:16', 'pad:16', 'daemon_mark:32', 'assign_mark:32',
  ]);
});

t.test('counter names follow enum capture_stat', async (t) => {
  const names = [...header.matchAll(/STAT_(\w+) = (\d+),/g)].filter((m) => m[1] !== 'MAX').map((m) => m[1]?.toLowerCase());
  t.same(names, [...STAT_NAMES]);
});

t.test('map keys are IPv4 addresses in network byte order', async (t) => {
  t.same([...ipKey('10.244.1.5')], [10, 244, 1, 5]);
  t.throws(() => ipKey('fd00::1'), { code: 'DATAPATH_MAP' });
});
