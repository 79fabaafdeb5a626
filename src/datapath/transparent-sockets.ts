// Sockets for eBPF capture. Node cannot set IP_TRANSPARENT, so the sockets are made through libc and
// handed to net: listeners that accept connections addressed to any IP (the assigned packets keep their
// original destination), and upstream sockets that connect from the client's own IP with the daemon's mark.
import net from 'node:net';
import { formatAddress, type SocketAddress } from '../hbone/headers.js';
import { formatHostPort, ipFamily, type IpFamily } from '../model/address.js';
import { ProxyError } from '../proxy/errors.js';
import { connectSocket, LISTEN_BACKLOG, type ListenOptions, type SocketFactory } from '../proxy/sockets.js';
import { ipKey } from './capture-program.js';
import { DatapathError } from './errors.js';
import { c, errno } from './ffi.js';

const AF_INET = 2;
const AF_INET6 = 10;
const EAFNOSUPPORT = 97;
const SOCK_STREAM = 1;
const SOCK_NONBLOCK = 0o4000;
const SOCK_CLOEXEC = 0o2000000;
const SOL_SOCKET = 1;
const SO_REUSEADDR = 2;
const SO_REUSEPORT = 15;
const SO_MARK = 36;
const SOL_IP = 0;
const IP_TRANSPARENT = 19;
const IP_BIND_ADDRESS_NO_PORT = 24;
const SOL_IPV6 = 41;
const IPV6_V6ONLY = 26;
const IPV6_TRANSPARENT = 75;

/** SO_MARK of the daemon's own sockets; must not match the assign fwmark (0x400/0xfff). */
export const DAEMON_MARK = 0x539;

// Scratch memory for the arguments of the libc calls below: each call has read it when it returns, so
// one buffer serves every call (a Buffer per call was four ArrayBuffers per upstream connection for the
// young collections to free; the address key from ipKey is the one left).
const SOCKADDR = Buffer.alloc(28);
const INT_OPT = Buffer.alloc(4);

/** struct sockaddr_in (16 bytes) or sockaddr_in6 (28 bytes) for ip:port, in SOCKADDR; its length. */
function sockaddr(ip: string, port: number): number {
  SOCKADDR.fill(0);
  SOCKADDR.writeUInt16BE(port, 2);
  const key = ipKey(ip); // throws for what is no IP address
  if (ipFamily(ip) === 4) {
    SOCKADDR.writeUInt16LE(AF_INET, 0);
    key.copy(SOCKADDR, 4, 12, 16);
    return 16;
  }
  SOCKADDR.writeUInt16LE(AF_INET6, 0);
  key.copy(SOCKADDR, 8);
  return 28;
}

function setIntOpt(fd: number, level: number, name: number, value: number): boolean {
  INT_OPT.writeInt32LE(value, 0);
  return (c.setsockopt(fd, level, name, INT_OPT, 4) as number) === 0;
}

type SockOpt = readonly [level: number, name: number, label: string, value?: number];

/** what: the socket's purpose for an error message, made only when there is one. */
function rawSocket(what: () => string, family: IpFamily, opts: readonly SockOpt[]): number {
  const fd = c.socket(family === 4 ? AF_INET : AF_INET6, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0) as number;
  if (fd < 0) throw new DatapathError('DATAPATH_SOCKET', `${what()}: socket`, errno());
  for (const [level, name, label, value] of opts) {
    if (!setIntOpt(fd, level, name, value ?? (name === SO_MARK ? DAEMON_MARK : 1))) {
      const e = errno();
      c.close(fd);
      throw new DatapathError('DATAPATH_SOCKET', `${what()}: setsockopt ${label}`, e);
    }
  }
  return fd;
}

function bindFd(fd: number, ip: string, port: number, what: () => string): void {
  if ((c.bind(fd, SOCKADDR, sockaddr(ip, port)) as number) !== 0) {
    const e = errno();
    c.close(fd);
    throw new DatapathError('DATAPATH_SOCKET', `${what()}: bind ${formatHostPort(ip, port)}`, e);
  }
}

/** IP_TRANSPARENT and its IPv6 twin: a socket that may use an address that is not the node's. */
function transparent(family: IpFamily): SockOpt {
  return family === 4 ? [SOL_IP, IP_TRANSPARENT, 'IP_TRANSPARENT'] : [SOL_IPV6, IPV6_TRANSPARENT, 'IPV6_TRANSPARENT'];
}

/**
 * A transparent listening socket on ip:port. A wildcard (0.0.0.0 or ::) listens on both families with one
 * dual-stack socket (::, IPV6_V6ONLY off: IPv4 peers appear as ::ffff:a.b.c.d), so the eBPF lookups find
 * it for either; where the kernel has no IPv6 at all, on 0.0.0.0.
 */
function listeningSocket(ip: string, port: number, what: () => string): number {
  const wildcard = ip === '0.0.0.0' || ip === '::';
  const open = (host: string, dualStack: boolean): number => {
    const family = ipFamily(host);
    const fd = rawSocket(what, family, [
      [SOL_SOCKET, SO_REUSEADDR, 'SO_REUSEADDR'],
      [SOL_SOCKET, SO_REUSEPORT, 'SO_REUSEPORT'],
      ...(dualStack ? [[SOL_IPV6, IPV6_V6ONLY, 'IPV6_V6ONLY', 0] as const] : []),
      transparent(family),
    ]);
    bindFd(fd, host, port, what);
    return fd;
  };
  if (!wildcard) return open(ip, false);
  try {
    return open('::', true);
  } catch (err) {
    // Only a kernel without IPv6 (ipv6.disable=1) refuses the socket itself; a namespace with IPv6
    // disabled by sysctl still binds :: and serves IPv4 on it.
    if (!(err instanceof DatapathError) || Math.abs(err.errno ?? 0) !== EAFNOSUPPORT) throw err;
    return open('0.0.0.0', false);
  }
}

const listenerFds = new WeakMap<net.Server, number>();

/** The descriptor of a transparent listener this process made (for the eBPF sk_lookup map). */
export function listenerFd(server: net.Server): number | undefined {
  return listenerFds.get(server);
}

export class TransparentSocketFactory implements SocketFactory {
  async listen(opts: ListenOptions, onConnection: (socket: net.Socket) => void): Promise<net.Server> {
    const what = (): string => `listener ${opts.host}:${opts.port}`;
    // One reuseport group per port: a new daemon joins it during an upgrade (the eBPF lookup and the
    // kernel pick a member), and a member that closes hands its queued connections on (tcp_migrate_req).
    const fd = listeningSocket(opts.host, opts.port, what);
    if ((c.listen(fd, LISTEN_BACKLOG) as number) !== 0) {
      const e = errno();
      c.close(fd);
      throw new DatapathError('DATAPATH_SOCKET', `${what()}: listen`, e);
    }
    const server = net.createServer({ allowHalfOpen: true, pauseOnConnect: opts.pauseOnConnect ?? false, noDelay: true });
    listenerFds.set(server, fd);
    server.on('connection', onConnection);
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      // Node listens again on a descriptor it is given, with its own backlog (511) unless one is passed as
      // an argument: for a descriptor it reads no options.backlog.
      server.listen({ fd }, LISTEN_BACKLOG, () => {
        server.off('error', reject);
        resolve();
      });
    });
    return server;
  }

  connect(dst: SocketAddress, srcIp: string | undefined, signal: AbortSignal): Promise<net.Socket> {
    const what = (): string => `upstream ${srcIp ?? '*'} -> ${formatAddress(dst)}`;
    const family = ipFamily(dst.ip);
    // A source of the other family cannot be kept (a hostile CONNECT could ask for one): refuse, never
    // send from the node's own address instead.
    if (srcIp !== undefined && ipFamily(srcIp) !== family) {
      return Promise.reject(new ProxyError('PROXY_UPSTREAM_CONNECT', `${what()}: source and destination are of different IP families`));
    }
    let fd: number;
    try {
      fd = rawSocket(what, family, [
        transparent(family),
        [SOL_SOCKET, SO_MARK, 'SO_MARK'],
        // Level SOL_IP for both families: the kernel reads it from the IPv4 options of any inet socket.
        [SOL_IP, IP_BIND_ADDRESS_NO_PORT, 'IP_BIND_ADDRESS_NO_PORT'],
      ]);
      if (srcIp !== undefined) bindFd(fd, srcIp, 0, what);
    } catch (err) {
      return Promise.reject(new ProxyError('PROXY_UPSTREAM_CONNECT', (err as Error).message, { cause: err }));
    }
    const socket = new net.Socket({ fd, allowHalfOpen: true, readable: true, writable: true });
    socket.setNoDelay(true);
    socket.connect({ host: dst.ip, port: dst.port });
    return connectSocket(socket, dst, signal);
  }
}
