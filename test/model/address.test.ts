// One spelling per address: what the State, the eBPF maps and policy matching key addresses by.
import fc from 'fast-check';
import ipaddr from 'ipaddr.js';
import t from 'tap';
import { addressFromKey, addressKey, canonicalIp, formatHostPort, ipFamily, ipOfFamily } from '../../src/model/address.js';

t.test('canonicalIp: IPv4 as is, IPv6 in RFC 5952 form, IPv4-mapped as IPv4, anything else refused', async (t) => {
  const rows: [string, string | undefined][] = [
    ['10.244.1.10', '10.244.1.10'],
    ['fd00:10:244:1::10', 'fd00:10:244:1::10'],
    ['FD00:0010:0244:0001:0000:0000:0000:0010', 'fd00:10:244:1::10'],
    ['2001:db8:0:0:1:0:0:1', '2001:db8::1:0:0:1'], // the longest run of zeros is shortened, the first on a tie
    ['2001:db8::0:1', '2001:db8::1'],
    ['::ffff:10.244.1.10', '10.244.1.10'],
    ['::FFFF:0a00:0001', '10.0.0.1'],
    ['::1', '::1'],
    ['0.0.0.0', '0.0.0.0'],
    ['255.255.255.255', '255.255.255.255'],
    ['256.1.1.1', undefined],
    ['1.2.3.4.5', undefined],
    ['::ffff:256.1.1.1', undefined],
    ['::ffff:1.2.3', undefined],
    ['::ffff:ffff:10.0.0.1', '::ffff:ffff:a00:1'], // mapped only when ::ffff: is the whole prefix
    ['::ffff:0:10.0.0.1', '::ffff:0:a00:1'], // IPv4-translated (RFC 2765), not IPv4-mapped
    ['::', '::'],
    ['10.244.1', undefined], // no shortened IPv4 forms
    ['010.1.1.1', undefined],
    ['fe80::1%eth0', undefined], // zones have no meaning in the cluster's addresses
    ['10.0.0.0/8', undefined],
    ['cart.shop.svc', undefined],
    ['', undefined],
  ];
  for (const [text, want] of rows) t.equal(canonicalIp(text), want, JSON.stringify(text));
});

t.test('canonicalIp: the dotted-quad shortcut answers as the full parse does', async (t) => {
  const octet = fc.oneof(fc.integer({ min: 0, max: 255 }).map(String), fc.constantFrom('00', '01', '010', '256', '999', ''));
  const text = fc.tuple(fc.constantFrom('', '::ffff:', '::FFFF:', '::ffff:0:'), octet, octet, octet, octet).map(([p, a, b, c, d]) => `${p}${a}.${b}.${c}.${d}`);
  const slow = (s: string): string | undefined =>
    ipaddr.IPv6.isValid(s) || ipaddr.IPv4.isValidFourPartDecimal(s) ? ipaddr.process(s).toString() : undefined;
  fc.assert(fc.property(text, (s) => canonicalIp(s) === slow(s)), { numRuns: 5000 });
  t.pass('5000 addresses');
});

t.test('families, host:port and map keys', async (t) => {
  t.equal(ipFamily('10.0.0.1'), 4);
  t.equal(ipFamily('fd00::1'), 6);
  t.equal(ipOfFamily(['10.0.0.1', 'fd00::1'], 6), 'fd00::1');
  t.equal(ipOfFamily(['fd00::1'], 4), undefined);
  t.equal(formatHostPort('fd00::1', 15008), '[fd00::1]:15008', 'RFC 3986 brackets');
  t.equal(formatHostPort('10.0.0.1', 15008), '10.0.0.1:15008');
  for (const ip of ['10.244.1.10', 'fd00:10:244:1::10', '::1']) t.equal(addressFromKey(addressKey(ip) as Buffer), ip, `${ip} there and back`);
  t.same(addressKey('::ffff:10.0.0.1'), addressKey('10.0.0.1'));
  t.same([...(addressKey('255.0.10.1') as Buffer)], [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 255, 0, 10, 1]);
  t.equal(addressKey('nope'), undefined);
});
