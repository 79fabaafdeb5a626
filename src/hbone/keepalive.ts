// PING every interval; a session that answers nothing for the timeout is destroyed, so a dead peer
// (pulled cable, frozen node) does not hold pooled streams forever.
import type { Http2Session } from 'node:http2';
import type { HboneTimeouts } from './constants.js';

export function keepAlive(session: Http2Session, t: Pick<HboneTimeouts, 'pingIntervalMs' | 'pingTimeoutMs'>): void {
  let lastHeard = Date.now();
  const heard = (): void => {
    lastHeard = Date.now();
  };
  const timer = setInterval(() => {
    if (session.destroyed || session.closed) return;
    if (Date.now() - lastHeard > t.pingTimeoutMs) {
      session.destroy(new Error(`no answer from peer for ${t.pingTimeoutMs} ms`));
      return;
    }
    try {
      session.ping((err) => {
        if (err === null) heard();
      });
    } catch {
      // too many outstanding pings: the silence check above decides
    }
  }, t.pingIntervalMs);
  timer.unref();
  session.on('stream', heard);
  session.on('close', () => clearInterval(timer));
}
