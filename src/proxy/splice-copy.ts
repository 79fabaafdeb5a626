// The copy of a proxied plain TCP connection (same node, inbound plaintext, out of the mesh): the
// daemon's own copy first, then, once one direction has carried SPLICE_AFTER bytes, the kernel's
// (src/datapath/socket-splicer.ts), with the contract of copyBidirectional throughout: bytes exact and in
// order, backpressure, half-close carried, a reset on one side resets the other, byte counts for the
// access log. Node keeps owning both sockets (it closes them) but, once they are spliced, neither reads
// nor writes them.
import net from 'node:net';
import type { Duplex } from 'node:stream';
import type { SocketSplicer } from '../datapath/socket-splicer.js';
import { copyBidirectional, release, reset, type CopyProgress, type CopyResult } from './copy.js';

/**
 * Bytes one direction of a connection carries before the kernel takes it over. Below it the daemon
 * copies: a request and its answer go through sooner that way (the splicer's wake-up on a pool thread
 * costs about 25 µs a round trip here), and bulk transfers are past it within a millisecond.
 */
export const SPLICE_AFTER = 256 * 1024;

/** The copy of a proxied connection: the daemon's, handed to the kernel's splice once it carries bulk. */
export function copyConnection(splicer: SocketSplicer | undefined, a: Duplex, b: Duplex, progress: CopyProgress): Promise<CopyResult> {
  if (splicer === undefined || !(a instanceof net.Socket) || !(b instanceof net.Socket)) return copyBidirectional(a, b, progress);
  return copyBidirectional(a, b, progress, { after: SPLICE_AFTER, ready: (take) => handOver(a, b, splicer, progress, take) });
}

type Handle = { reading?: boolean; readStop?: () => number; fd?: number };
const handleOf = (s: net.Socket): Handle | undefined => (s as unknown as { _handle?: Handle })._handle;

/** Node's reads stop (they start again by themselves when the stream wants more, see resumeReading). */
function stopReading(s: net.Socket): void {
  const h = handleOf(s);
  if (h?.reading !== true || h.readStop === undefined) return;
  h.reading = false;
  h.readStop();
}

function resumeReading(s: net.Socket): void {
  if (!s.destroyed) s.read(0);
}

/** An end of stream Node has read but not yet announced ('end' comes a tick later). */
function endPending(s: net.Socket): boolean {
  return (s as unknown as { _readableState?: { ended?: boolean } })._readableState?.ended === true;
}

/**
 * Tries, until the daemon's copy has nothing in flight, to stop it and splice from there. With reads
 * stopped and every buffer empty (all in one tick), the kernel has every byte not yet carried.
 */
function handOver(a: net.Socket, b: net.Socket, splicer: SocketSplicer, progress: CopyProgress, take: (next: () => Promise<CopyResult>) => boolean): void {
  let tries = 0;
  const attempt = (): void => {
    if (a.destroyed || b.destroyed || endPending(a) || endPending(b)) return;
    stopReading(a);
    stopReading(b);
    if (take(() => spliceBidirectional(a, b, splicer, progress).done)) return;
    resumeReading(a);
    resumeReading(b);
    // A peer that is slow to take what the daemon holds keeps its copy; a few more tries, then none.
    if (++tries < 50) setTimeout(attempt, 2);
  };
  setImmediate(attempt);
}

/** The descriptor libuv holds for a socket. */
function fdOf(s: net.Socket): number | undefined {
  const fd = handleOf(s)?.fd;
  return typeof fd === 'number' && fd >= 0 ? fd : undefined;
}

/**
 * Node has none of the socket's bytes and is not reading it: an accepted socket still paused since
 * accept (pauseOnConnect), or one whose reads the handover stopped.
 */
function untouched(s: net.Socket): boolean {
  const reading = handleOf(s)?.reading === true;
  return !s.destroyed && !reading && !s.readableEnded && !s.writableEnded && s.readableLength === 0 && s.writableLength === 0;
}

export interface SpliceResult {
  /** Whether the kernel carries the bytes (false: the daemon's copy; a socket had been read already). */
  readonly spliced: boolean;
  readonly done: Promise<CopyResult>;
}

export function spliceBidirectional(a: net.Socket, b: net.Socket, splicer: SocketSplicer, progress: CopyProgress = { aToB: 0, bToA: 0 }): SpliceResult {
  const fa = fdOf(a);
  const fb = fdOf(b);
  if (fa === undefined || fb === undefined || !untouched(a) || !untouched(b)) return { spliced: false, done: copyBidirectional(a, b, progress) };
  // What the daemon copied before (a handover), counted with what the kernel carries.
  const before = { aToB: progress.aToB, bToA: progress.bToA };
  let cancel: () => { aToB: number; bToA: number } = () => ({ aToB: 0, bToA: 0 });
  let spliced = true;
  const done = new Promise<CopyResult>((resolve, reject) => {
    let settled = false;
    const settle = (bytes: { aToB: number; bToA: number }): void => {
      settled = true;
      progress.aToB = before.aToB + bytes.aToB;
      progress.bToA = before.bToA + bytes.bToA;
      a.off('close', onClose);
      b.off('close', onClose);
    };
    // Closed by someone else (a policy change, a drain's deadline): the splice stops before the
    // descriptor can be reused, and the other side is reset.
    const onClose = (): void => {
      if (settled) return;
      settle(cancel());
      reset(a);
      reset(b);
      reject(new Error('connection reset'));
    };
    a.on('close', onClose);
    b.on('close', onClose);
    a.on('error', () => undefined);
    b.on('error', () => undefined);
    try {
      cancel = splicer.add(fa, fb, {
        open: (side) => !(side === 0 ? a : b).destroyed,
        done: (bytes) => {
          settle(bytes);
          release(a);
          release(b);
          resolve({ aToB: progress.aToB, bToA: progress.bToA });
        },
        failed: (err, bytes) => {
          settle(bytes);
          reset(a);
          reset(b);
          reject(err);
        },
      }).cancel;
    } catch {
      // The kernel would not take them (no epoll watch left, the splicer closing): the daemon copies on.
      spliced = false;
      settle({ aToB: 0, bToA: 0 });
      copyBidirectional(a, b, progress).then(resolve, reject);
    }
  });
  return { spliced, done };
}
