// The send buffer of an HBONE connection's TCP socket. Node's HTTP/2 session stops reading its socket
// while a write to it is in progress (node_http2.cc, MaybeStopReading: a defence against peers that send
// without reading). Two daemons carrying bulk both ways over one connection (an echo, a replication
// stream) then stall for good once both TCP pipes are full: each waits to write, neither reads. A send
// buffer that holds everything the peer's HTTP/2 windows let us send means a write never waits for the
// peer to read, so neither side stops reading.
import { readFileSync } from 'node:fs';
import type net from 'node:net';
import type { Logger } from 'pino';
import { c } from './ffi.js';

const SOL_SOCKET = 1;
const SO_SNDBUF = 7;
const SO_SNDBUFFORCE = 32; // past net.core.wmem_max; needs CAP_NET_ADMIN, which the node daemon has

let wmemMaxBytes: number | undefined;
/** net.core.wmem_max, read once: it matters only where SO_SNDBUFFORCE is refused, then for every socket. */
function wmemMax(): number {
  if (wmemMaxBytes === undefined) {
    try {
      wmemMaxBytes = Number(readFileSync('/proc/sys/net/core/wmem_max', 'utf8').trim());
    } catch {
      wmemMaxBytes = 0;
    }
  }
  return wmemMaxBytes;
}

/**
 * Asks the kernel for a send buffer of bytes on the socket (it doubles the figure for its bookkeeping);
 * false when it cannot have that much (no CAP_NET_ADMIN and net.core.wmem_max below it). A smaller fixed
 * buffer would only end the kernel's autotuning, so then the socket is left as it is.
 */
export function reserveSendBuffer(socket: net.Socket, bytes: number): boolean {
  const fd = (socket as unknown as { _handle?: { fd?: number } })._handle?.fd;
  if (typeof fd !== 'number' || fd < 0) return false;
  const value = Buffer.alloc(4);
  value.writeInt32LE(bytes, 0);
  if ((c.setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, value, 4) as number) === 0) return true;
  return wmemMax() >= bytes && (c.setsockopt(fd, SOL_SOCKET, SO_SNDBUF, value, 4) as number) === 0;
}

/** reserveSendBuffer for every HBONE socket of a process; says once when the kernel will not allow it. */
export function sendBufferReserver(bytes: number, logger: Logger): (socket: net.Socket) => void {
  let warned = false;
  return (socket) => {
    if (reserveSendBuffer(socket, bytes) || warned) return;
    warned = true;
    logger.warn(
      { wanted: bytes },
      'cannot give HBONE sockets the send buffer their HTTP/2 windows need (no CAP_NET_ADMIN, net.core.wmem_max below it): a connection carrying bulk both ways can stall',
    );
  };
}
