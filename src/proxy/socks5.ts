// SOCKS5 (RFC 1928, CONNECT with IPv4/IPv6 addresses, no authentication) on 127.0.0.1:15080, feeding
// the outbound path, so the mesh can be driven without eBPF capture. The client's source IP names the
// workload it speaks for; any other source is refused.
import { isIPv4, isIPv6 } from 'node:net';
import type net from 'node:net';
import type { SocketAddress } from '../hbone/headers.js';
import { addressFromKey, normalIp } from '../model/address.js';
import type { ProxyInputs } from './inputs.js';
import type { OutboundProxy } from './outbound.js';
import type { ResponseFlag } from './response-flags.js';

const VERSION = 5;
const NO_AUTH = 0;
const NO_ACCEPTABLE_METHOD = 0xff;
const CMD_CONNECT = 1;
const ATYP_IPV4 = 1;
const ATYP_DOMAIN = 3;
const ATYP_IPV6 = 4;
const HANDSHAKE_TIMEOUT_MS = 10_000;

export const REPLY = {
  succeeded: 0,
  generalFailure: 1,
  notAllowed: 2,
  hostUnreachable: 4,
  connectionRefused: 5,
  commandNotSupported: 7,
  addressTypeNotSupported: 8,
} as const;

type Parsed = { kind: 'need-more' } | { kind: 'error'; reply: number; reason: string } | { kind: 'ok'; dst: SocketAddress; used: number };

/** Parses the greeting plus the CONNECT request from the bytes received so far. */
export function parseSocksHandshake(buf: Buffer, greeted: boolean): Parsed | { kind: 'greeting'; used: number; noAuth: boolean } {
  if (!greeted) {
    if (buf.length < 2) return { kind: 'need-more' };
    if (buf[0] !== VERSION) return { kind: 'error', reply: REPLY.generalFailure, reason: `socks version ${buf[0]}` };
    const n = buf[1] ?? 0;
    if (buf.length < 2 + n) return { kind: 'need-more' };
    return { kind: 'greeting', used: 2 + n, noAuth: buf.subarray(2, 2 + n).includes(NO_AUTH) };
  }
  if (buf.length < 4) return { kind: 'need-more' };
  if (buf[0] !== VERSION) return { kind: 'error', reply: REPLY.generalFailure, reason: `socks version ${buf[0]}` };
  if (buf[1] !== CMD_CONNECT) return { kind: 'error', reply: REPLY.commandNotSupported, reason: `socks command ${buf[1]}` };
  const atyp = buf[3];
  const addrLen = atyp === ATYP_IPV4 ? 4 : atyp === ATYP_IPV6 ? 16 : -1;
  if (addrLen < 0) {
    const what = atyp === ATYP_DOMAIN ? 'host names are not resolved' : `address type ${atyp}`;
    return { kind: 'error', reply: REPLY.addressTypeNotSupported, reason: what };
  }
  if (buf.length < 4 + addrLen + 2) return { kind: 'need-more' };
  const addr = buf.subarray(4, 4 + addrLen);
  // RFC 5952 form (IPv4-mapped as IPv4), as every other entry writes addresses.
  const ip = addrLen === 4 ? [...addr].join('.') : addressFromKey(addr);
  const port = buf.readUInt16BE(4 + addrLen);
  return { kind: 'ok', dst: { ip, port }, used: 4 + addrLen + 2 };
}

function reply(code: number): Buffer {
  return Buffer.from([VERSION, code, 0, ATYP_IPV4, 0, 0, 0, 0, 0, 0]);
}

export function replyForFlag(flag: ResponseFlag): number {
  switch (flag) {
    case 'DENIED':
    case 'UNKNOWN_SOURCE':
    case 'RECURSION':
      return REPLY.notAllowed;
    case 'NO_HEALTHY_UPSTREAM':
    case 'NO_SERVICE_PORT':
    case 'NO_ROUTE':
      return REPLY.hostUnreachable;
    case 'UPSTREAM_CONNECT':
    case 'UPSTREAM_503':
      return REPLY.connectionRefused;
    default:
      return REPLY.generalFailure;
  }
}

export function handleSocksConnection(pi: ProxyInputs, outbound: OutboundProxy, socket: net.Socket): void {
  let buf = Buffer.alloc(0);
  let greeted = false;
  socket.on('error', () => undefined);
  socket.setTimeout(HANDSHAKE_TIMEOUT_MS, () => socket.destroy());
  const refuse = (code: number, reason: string): void => {
    pi.logger.info({ src: normalIp(socket.remoteAddress), reason }, 'socks5 request refused');
    socket.end(reply(code));
  };
  const onData = (chunk: Buffer): void => {
    buf = Buffer.concat([buf, chunk]);
    for (;;) {
      const r = parseSocksHandshake(buf, greeted);
      if (r.kind === 'need-more') return;
      socket.off('data', onData);
      if (r.kind === 'error') return refuse(r.reply, r.reason);
      if (r.kind === 'greeting') {
        if (!r.noAuth) {
          socket.end(Buffer.from([VERSION, NO_ACCEPTABLE_METHOD]));
          return;
        }
        socket.write(Buffer.from([VERSION, NO_AUTH]));
        greeted = true;
        buf = buf.subarray(r.used);
        socket.on('data', onData);
        continue;
      }
      socket.pause();
      socket.setTimeout(0);
      const rest = buf.subarray(r.used);
      if (rest.length > 0) socket.unshift(rest);
      const src = { ip: normalIp(socket.remoteAddress), port: socket.remotePort ?? 0 };
      if (!isIPv4(r.dst.ip) && !isIPv6(r.dst.ip)) return refuse(REPLY.addressTypeNotSupported, 'bad address');
      outbound.handle(socket, src, r.dst, {
        strictSource: true,
        onEstablished: () => socket.write(reply(REPLY.succeeded)),
        onFailed: (_err, flag) => socket.end(reply(replyForFlag(flag))),
      });
      return;
    }
  };
  socket.on('data', onData);
}
