// Sockets for eBPF capture. Node cannot set IP_TRANSPARENT, so the sockets are made through libc and
// handed to net: listeners that accept connections addressed to any IP (the assigned packets keep their
// original destination), and upstream sockets that connect from the client's own IP with the daemon's mark.
import net from 'node:net';
import type { SocketAddress } from '../hbone/headers.js';
import { ProxyError } from '../proxy/errors.js';
import { connectSocket, type ListenOptions, type SocketFactory } from '../proxy/sockets.js';
import { ipKey } from './capture-program.js';
import { DatapathError } from './errors.js';
import { c, errno } from './ffi.js';

const AF_INET = 2;
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
const LISTEN_BACKLOG = 1024;

/** SO_MARK of the daemon's own sockets; must not match the assign fwmark (0x400/0xfff). */
export const DAEMON_MARK = 0x539;

function sockaddrIn(ip: string, port: number): Buffer {
  const b = Buffer.alloc(16);
  b.writeUInt16LE(AF_INET, 0);
  b.writeUInt16BE(port, 2);
  ipKey(ip).copy(b, 4);
  return b;
}

function intOpt(v: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeInt32LE(v, 0);
  return b;
}

function rawSocket(what: string, opts: readonly [level: number, name: number, label: string][]): number {
  const fd = c.socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0) as number;
  if (fd < 0) throw new DatapathError('DATAPATH_SOCKET', `${what}: socket`, errno());
  for (const [level, name, label] of opts) {
    if ((c.setsockopt(fd, level, name, intOpt(name === SO_MARK ? DAEMON_MARK : 1), 4) as number) !== 0) {
      const e = errno();
      c.close(fd);
      throw new DatapathError('DATAPATH_SOCKET', `${what}: setsockopt ${label}`, e);
    }
  }
  return fd;
}

function bindFd(fd: number, ip: string, port: number, what: string): void {
  if ((c.bind(fd, sockaddrIn(ip, port), 16) as number) !== 0) {
    const e = errno();
    c.close(fd);
    throw new DatapathError('DATAPATH_SOCKET', `${what}: bind ${ip}:${port}`, e);
  }
}

const listenerFds = new WeakMap<net.Server, number>();

/** The descriptor of a transparent listener this process made (for the eBPF sk_lookup map). */
export function listenerFd(server: net.Server): number | undefined {
  return listenerFds.get(server);
}

export class TransparentSocketFactory implements SocketFactory {
  async listen(opts: ListenOptions, onConnection: (socket: net.Socket) => void): Promise<net.Server> {
    const what = `listener ${opts.host}:${opts.port}`;
    // One reuseport group per port: a new daemon joins it during an upgrade (the eBPF lookup and the
    // kernel pick a member), and a member that closes hands its queued connections on (tcp_migrate_req).
    const fd = rawSocket(what, [
      [SOL_SOCKET, SO_REUSEADDR, 'SO_REUSEADDR'],
      [SOL_SOCKET, SO_REUSEPORT, 'SO_REUSEPORT'],
      [SOL_IP, IP_TRANSPARENT, 'IP_TRANSPARENT'],
    ]);
    bindFd(fd, opts.host, opts.port, what);
    if ((c.listen(fd, LISTEN_BACKLOG) as number) !== 0) {
      const e = errno();
      c.close(fd);
      throw new DatapathError('DATAPATH_SOCKET', `${what}: listen`, e);
    }
    const server = net.createServer({ allowHalfOpen: true, pauseOnConnect: opts.pauseOnConnect ?? false, noDelay: true });
    listenerFds.set(server, fd);
    server.on('connection', onConnection);
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen({ fd }, () => {
        server.off('error', reject);
        resolve();
      });
    });
    return server;
  }

  connect(dst: SocketAddress, srcIp: string | undefined, signal: AbortSignal): Promise<net.Socket> {
    const what = `upstream ${srcIp ?? '*'} -> ${dst.ip}:${dst.port}`;
    let fd: number;
    try {
      fd = rawSocket(what, [
        [SOL_IP, IP_TRANSPARENT, 'IP_TRANSPARENT'],
        [SOL_SOCKET, SO_MARK, 'SO_MARK'],
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
