// The TypeScript mirrors of bpf/lib/maps.h must match it byte for byte.
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { STAT_NAMES, encodeConfig, encodePodAddrs, ipKey } from '../../src/datapath/capture-program.js';

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

t.test('struct addr_key: 16 bytes, IPv6 as is and IPv4 as IPv4-mapped, network byte order', async (t) => {
  t.match(header, /struct addr_key \{\s*__u32 a\[4\];\s*\}/);
  t.same([...ipKey('10.244.1.5')], [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 244, 1, 5]);
  t.same([...ipKey('::ffff:10.244.1.5')], [...ipKey('10.244.1.5')], 'an IPv4-mapped spelling is the same key');
  t.same([...ipKey('fd00:10:244:1::10')], [0xfd, 0, 0, 0x10, 0x02, 0x44, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0x10]);
  t.same([...ipKey('FD00:10:244:1:0:0:0:10')], [...ipKey('fd00:10:244:1::10')], 'any IPv6 spelling is the same key');
  t.throws(() => ipKey('not-an-ip'), { code: 'DATAPATH_MAP' });
  t.throws(() => ipKey('10.0.0.0/8'), { code: 'DATAPATH_MAP' });
});

t.test('struct pod_addrs: the IPv4 address (4 bytes), then the IPv6 address (16), zero where there is none', async (t) => {
  t.match(header, /struct pod_addrs \{\s*__u32 ip4;[^\n]*\n\s*__u32 ip6\[4\];\s*\}/);
  const dual = encodePodAddrs(['10.244.1.10', 'fd00:10:244:1::10']);
  t.equal(dual.length, 20);
  t.same([...dual.subarray(0, 4)], [10, 244, 1, 10]);
  t.same([...dual.subarray(4)], [...ipKey('fd00:10:244:1::10')]);
  t.same([...encodePodAddrs(['fd00::5']).subarray(0, 4)], [0, 0, 0, 0], 'an IPv6-only pod: no IPv4 address');
  t.same([...encodePodAddrs(['10.0.0.1']).subarray(4)], new Array(16).fill(0), 'an IPv4-only pod: no IPv6 address');
  t.throws(() => encodePodAddrs(['10.0.0.1', '10.0.0.2']), { code: 'DATAPATH_MAP' }, 'two of one family is refused');
});
