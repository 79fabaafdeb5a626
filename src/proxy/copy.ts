// Bidirectional byte copy between two duplex streams: backpressure through pipe(), half-close honoured
// (an end in one direction ends only that direction), any error or reset tears down both sides.
import type { Duplex } from 'node:stream';

export interface CopyResult {
  /** Bytes from a to b. */
  readonly aToB: number;
  readonly bToA: number;
}

export interface CopyProgress {
  aToB: number;
  bToA: number;
}

export function copyBidirectional(a: Duplex, b: Duplex, progress: CopyProgress = { aToB: 0, bToA: 0 }): Promise<CopyResult> {
  return new Promise((resolve, reject) => {
    let pending = 2;
    let settled = false;
    const finish = (err?: Error): void => {
      if (settled) return;
      if (err !== undefined) {
        settled = true;
        a.destroy();
        b.destroy();
        reject(err);
        return;
      }
      pending -= 1;
      if (pending === 0) {
        settled = true;
        a.destroy();
        b.destroy();
        resolve({ aToB: progress.aToB, bToA: progress.bToA });
      }
    };
    const direction = (from: Duplex, to: Duplex, count: (n: number) => void): void => {
      let readDone = false;
      from.on('data', (chunk: Buffer) => count(chunk.length));
      from.once('end', () => {
        readDone = true;
      });
      to.once('finish', () => {
        if (readDone) finish();
      });
      from.pipe(to, { end: true });
    };
    const onError = (err: Error): void => finish(err);
    const onClose = (side: Duplex) => (): void => {
      // A side that closes while the other direction still had work is a reset, not a clean end.
      if (!settled && (!side.readableEnded || !side.writableFinished)) finish(new Error('connection reset'));
    };
    a.on('error', onError);
    b.on('error', onError);
    a.once('close', onClose(a));
    b.once('close', onClose(b));
    direction(a, b, (n) => (progress.aToB += n));
    direction(b, a, (n) => (progress.bToA += n));
  });
}
