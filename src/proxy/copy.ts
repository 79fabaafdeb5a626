// Bidirectional byte copy between two duplex streams: backpressure (the reader paused while the writer is
// full), half-close honoured (an end in one direction ends only that direction), and any error or reset on
// one side resets the other (TCP RST, or RST_STREAM CANCEL for an HTTP/2 stream).
//
// Written out instead of pipe() and once(), because each open connection pays for their state: one 'data'
// listener a direction that counts and writes, and plain listeners for events that fire once anyway.
// pipe() added nine closures a direction and a second 'data' listener (an array) to count; every once()
// a bound wrapper and its state (bench/README.md, memory).
//
// A reset HTTP/2 stream (RST_STREAM from the peer, or its session gone) emits 'aborted' before the 'end'
// that would be carried on as a FIN, so 'aborted' is taken as the reset: the TCP side gets a RST, never
// a clean FIN that a client could take for a complete response.
import { constants as h2 } from 'node:http2';
import { Socket } from 'node:net';
import { TLSSocket } from 'node:tls';
import type { Duplex } from 'node:stream';
import { batchedWriter } from './write-batch.js';

export interface CopyResult {
  /** Bytes from a to b. */
  readonly aToB: number;
  readonly bToA: number;
}

export interface CopyProgress {
  aToB: number;
  bToA: number;
}

/** Tears a side down so that its peer sees a failure, not a clean end. */
export function reset(side: Duplex): void {
  if (side.destroyed) return;
  // resetAndDestroy() throws for a handle that is not TCP's (a TLS socket's); a TLS peer sees the close.
  if (side instanceof Socket && !(side instanceof TLSSocket) && !side.writableEnded) {
    side.resetAndDestroy();
    return;
  }
  const stream = side as Duplex & { close?: (code: number) => void };
  if (!(side instanceof Socket) && typeof stream.close === 'function') stream.close(h2.NGHTTP2_CANCEL);
  else side.destroy();
}

/**
 * Frees a side whose both directions ended cleanly. An HTTP/2 stream closes by itself once its END_STREAM
 * is out; destroying it here would send a needless RST_STREAM for every connection (~30 µs each).
 */
export function release(side: Duplex): void {
  const stream = side as Duplex & { close?: (code: number) => void };
  if (!(side instanceof Socket) && typeof stream.close === 'function') return;
  side.destroy();
}

/** Lets another mover take over an open copy (the kernel's splice, once a connection carries bulk). */
export interface CopyHandover {
  /** Bytes in one direction after which ready() is called, once. */
  readonly after: number;
  /**
   * take(next) detaches the copy and settles it with next()'s result, if nothing is in flight and
   * neither side has ended or failed; otherwise it returns false and the copy goes on.
   */
  ready(take: (next: () => Promise<CopyResult>) => boolean): void;
}

export function copyBidirectional(a: Duplex, b: Duplex, progress: CopyProgress = { aToB: 0, bToA: 0 }, handover?: CopyHandover): Promise<CopyResult> {
  return new Promise((resolve, reject) => {
    let pending = 2;
    let settled = false;
    let ended = false;
    // Every listener, so that a handover can take them all off (kept only when one may come: an
    // array for each held connection is memory the copy's pump was written to save).
    type Listener = (...args: unknown[]) => void;
    const attached: [Duplex, string, Listener][] = [];
    const on = <A extends unknown[]>(side: Duplex, event: string, fn: (...args: A) => void): void => {
      side.on(event, fn as unknown as Listener);
      if (handover !== undefined) attached.push([side, event, fn as unknown as Listener]);
    };
    let offered = handover === undefined;
    const take = (next: () => Promise<CopyResult>): boolean => {
      const idle = (s: Duplex): boolean => s.writableLength === 0 && s.readableLength === 0 && !s.destroyed;
      if (settled || ended || !idle(a) || !idle(b)) return false;
      settled = true;
      for (const [side, event, fn] of attached) side.off(event, fn);
      next().then(resolve, reject);
      return true;
    };
    const maybeOffer = (): void => {
      if (offered || handover === undefined || Math.max(progress.aToB, progress.bToA) < handover.after) return;
      offered = true;
      handover.ready(take);
    };
    const finish = (err?: Error): void => {
      if (settled) return;
      if (err !== undefined) {
        settled = true;
        reset(a);
        reset(b);
        reject(err);
        return;
      }
      pending -= 1;
      if (pending === 0) {
        settled = true;
        release(a);
        release(b);
        resolve({ aToB: progress.aToB, bToA: progress.bToA });
      }
    };
    const direction = (from: Duplex, to: Duplex, count: (n: number) => void): void => {
      let readDone = false;
      const write = to instanceof Socket ? batchedWriter(to) : (chunk: Buffer): boolean => to.write(chunk);
      on(from, 'data', (chunk: Buffer) => {
        count(chunk.length);
        if (!write(chunk)) from.pause();
        maybeOffer();
      });
      on(to, 'drain', () => from.resume());
      on(from, 'end', () => {
        readDone = true;
        ended = true;
        to.end();
      });
      on(to, 'finish', () => {
        if (readDone) finish();
      });
      // An accepted socket starts paused (pauseOnConnect), and a 'data' listener does not resume a
      // stream that was paused explicitly.
      from.resume();
    };
    const onError = (err: Error): void => finish(err);
    const onClose = (side: Duplex) => (): void => {
      // A side that closes while a direction still had work is a reset, not a clean end. An HTTP/2 stream
      // cut by RST_STREAM reports both directions finished, so its reset code decides.
      const rstCode = (side as Duplex & { rstCode?: number }).rstCode;
      const wasReset = rstCode !== undefined && rstCode !== h2.NGHTTP2_NO_ERROR;
      if (!settled && (wasReset || !side.readableEnded || !side.writableFinished)) {
        finish(new Error(wasReset ? `stream reset (code ${rstCode})` : 'connection reset'));
      }
    };
    // A side that closed before the copy began (an HTTP/2 stream the peer reset while its upstream was
    // being connected) will emit no more events: without this the other side would stay open forever.
    const gone = (side: Duplex): boolean => side.destroyed || side.closed;
    if (gone(a) || gone(b)) {
      finish(new Error('a side closed before the copy started'));
      return;
    }
    on(a, 'error', onError);
    on(b, 'error', onError);
    on(a, 'close', onClose(a));
    on(b, 'close', onClose(b));
    const onAborted = (side: Duplex) => (): void => {
      const rstCode = (side as Duplex & { rstCode?: number }).rstCode;
      if (rstCode !== undefined && rstCode !== h2.NGHTTP2_NO_ERROR) finish(new Error(`stream reset (code ${rstCode})`));
    };
    on(a, 'aborted', onAborted(a));
    on(b, 'aborted', onAborted(b));
    direction(a, b, (n) => (progress.aToB += n));
    direction(b, a, (n) => (progress.bToA += n));
  });
}
