// Every listener and upstream socket the proxies use is made here, so the datapath can swap in
// transparent (IP_TRANSPARENT, SO_MARK) sockets without touching the proxies.
import net from 'node:net';
import { formatAddress, type SocketAddress } from '../hbone/headers.js';
import { formatHostPort } from '../model/address.js';
import { ProxyError } from './errors.js';

/**
 * Connections the kernel queues for a listener until the daemon accepts them. A node's daemon takes every
 * new connection of every pod on its node: with Node's default of 511, a burst of 9,000 from one pod
 * overflowed the queue (ListenOverflows), and a client whose last handshake ACK was dropped there, and which
 * then sends nothing, believed itself connected to a daemon that never saw it. The kernel caps this at
 * net.core.somaxconn (4096 by default since Linux 5.4).
 */
export const LISTEN_BACKLOG = 4096;

export interface ListenOptions {
  readonly host: string;
  readonly port: number;
  /** Accepted sockets are not read until handed on (TLS must see every byte). */
  readonly pauseOnConnect?: boolean;
}

export interface SocketFactory {
  listen(opts: ListenOptions, onConnection: (socket: net.Socket) => void): Promise<net.Server>;
  /** Connects to dst, from srcIp when given (the client's own IP, so the server sees it). */
  connect(dst: SocketAddress, srcIp: string | undefined, signal: AbortSignal): Promise<net.Socket>;
}

/** Ordinary sockets: binding a source IP works for addresses local to this host (loopback tests). */
export class PlainSocketFactory implements SocketFactory {
  async listen(opts: ListenOptions, onConnection: (socket: net.Socket) => void): Promise<net.Server> {
    // 0.0.0.0 means every address of both families: one dual-stack socket on ::, or 0.0.0.0 where the
    // host has no IPv6 at all.
    if (opts.host === '0.0.0.0') {
      try {
        return await this.#listenOn({ ...opts, host: '::' }, onConnection);
      } catch (err) {
        if ((err as { cause?: { code?: string } }).cause?.code !== 'EAFNOSUPPORT') throw err;
      }
    }
    return this.#listenOn(opts, onConnection);
  }

  async #listenOn(opts: ListenOptions, onConnection: (socket: net.Socket) => void): Promise<net.Server> {
    const server = net.createServer({ allowHalfOpen: true, pauseOnConnect: opts.pauseOnConnect ?? false, noDelay: true });
    server.on('connection', onConnection);
    await new Promise<void>((resolve, reject) => {
      const onError = (err: Error): void =>
        reject(new ProxyError('PROXY_BIND', `failed to bind ${formatHostPort(opts.host, opts.port)}: ${err.message}`, { cause: err }));
      server.once('error', onError);
      server.listen({ host: opts.host, port: opts.port, backlog: LISTEN_BACKLOG }, () => {
        server.off('error', onError);
        resolve();
      });
    });
    return server;
  }

  connect(dst: SocketAddress, srcIp: string | undefined, signal: AbortSignal): Promise<net.Socket> {
    return connectSocket(
      net.connect({ host: dst.ip, port: dst.port, allowHalfOpen: true, noDelay: true, ...(srcIp === undefined ? {} : { localAddress: srcIp }) }),
      dst,
      signal,
    );
  }
}

/** Resolves when the socket connected; destroys it and rejects on error or abort. */
export function connectSocket(socket: net.Socket, dst: SocketAddress, signal: AbortSignal): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const cleanup = (): void => {
      socket.off('connect', onConnect);
      socket.off('error', onError);
      signal.removeEventListener('abort', onAbort);
    };
    const onConnect = (): void => {
      cleanup();
      resolve(socket);
    };
    const onError = (err: Error): void => {
      cleanup();
      socket.destroy();
      reject(new ProxyError('PROXY_UPSTREAM_CONNECT', `connect to ${formatAddress(dst)}: ${err.message}`, { cause: err }));
    };
    const onAbort = (): void => {
      const reason: unknown = signal.reason;
      onError(reason instanceof Error && reason.name !== 'TimeoutError' ? reason : new Error('timed out'));
    };
    socket.once('connect', onConnect);
    socket.once('error', onError);
    if (signal.aborted) onAbort();
    else signal.addEventListener('abort', onAbort, { once: true });
  });
}
