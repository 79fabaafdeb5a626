// SOCKS5 CONNECT requests (RFC 1928) for IPv4 and IPv6 destinations.
import t from 'tap';
import { REPLY, parseSocksHandshake } from '../../src/proxy/socks5.js';

const request = (atyp: number, addr: number[], port: number): Buffer => Buffer.from([5, 1, 0, atyp, ...addr, port >> 8, port & 0xff]);
const v6 = (text: string): number[] => {
  // Written out in full here, so the parser's formatting is what is tested.
  const groups = text.split(':').map((g) => parseInt(g, 16));
  return groups.flatMap((g) => [g >> 8, g & 0xff]);
};

t.test('IPv6 destinations are read in RFC 5952 form', async (t) => {
  const rows: [string, string][] = [
    ['fd00:10:244:1:0:0:0:10', 'fd00:10:244:1::10'],
    ['1:0:0:1:0:0:0:1', '1:0:0:1::1'], // the longest run of zeros is the one shortened
    ['2001:db8:0:0:1:0:0:1', '2001:db8::1:0:0:1'], // on a tie, the first
    ['0:0:0:0:0:0:0:1', '::1'],
    ['fd00:0:0:0:0:0:0:0', 'fd00::'],
    ['2001:db8:1:2:3:4:5:6', '2001:db8:1:2:3:4:5:6'],
    ['0:0:0:0:0:ffff:a00:1', '10.0.0.1'], // IPv4-mapped: the IPv4 address
  ];
  for (const [full, want] of rows) t.match(parseSocksHandshake(request(4, v6(full), 8080), true), { kind: 'ok', dst: { ip: want, port: 8080 }, used: 22 }, full);
});

t.test('IPv4 destinations, and what is refused', async (t) => {
  t.match(parseSocksHandshake(request(1, [10, 244, 1, 10], 80), true), { kind: 'ok', dst: { ip: '10.244.1.10', port: 80 }, used: 10 });
  t.match(parseSocksHandshake(Buffer.from([5, 1, 0, 3, 4, 0x68, 0x6f, 0x73, 0x74, 0, 80]), true), { kind: 'error', reply: REPLY.addressTypeNotSupported });
  t.match(parseSocksHandshake(request(4, v6('fd00:0:0:0:0:0:0:1'), 80).subarray(0, 12), true), { kind: 'need-more' });
});
