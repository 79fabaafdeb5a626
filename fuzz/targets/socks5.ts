// The SOCKS5 handshake (15080): greeting and CONNECT, from the bytes received so far. The first input
// byte says which of the two is expected.
import { isIP } from 'node:net';
import { normalIp } from '../../src/model/address.js';
import { parseSocksHandshake } from '../../src/proxy/socks5.js';
import { check } from './contract.js';

export function fuzz(data: Buffer): void {
  const greeted = (data[0] ?? 0) % 2 === 1;
  const buf = data.subarray(1);
  const r = parseSocksHandshake(buf, greeted);
  switch (r.kind) {
    case 'ok':
      check(r.used <= buf.length, 'used more bytes than arrived');
      check(isIP(r.dst.ip) !== 0 && normalIp(r.dst.ip) === r.dst.ip, `destination ${r.dst.ip} is not one canonical address`);
      check(Number.isInteger(r.dst.port) && r.dst.port >= 0 && r.dst.port <= 65535, `port ${r.dst.port}`);
      // A prefix of a complete request is never an answer of its own.
      for (let n = 0; n < r.used; n++) check(parseSocksHandshake(buf.subarray(0, n), greeted).kind === 'need-more', `prefix of ${n} bytes was answered`);
      break;
    case 'greeting':
      check(r.used <= buf.length, 'greeting used more bytes than arrived');
      break;
    case 'error':
      check(typeof r.reply === 'number' && r.reason.length > 0, 'an error without a reply code or reason');
      break;
    case 'need-more':
      break;
  }
}
