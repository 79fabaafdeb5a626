// HBONE client connection pool.
//
// Invariants:
//  - Sessions are keyed by (source identity, expected destination identities, next hop, source IP); a
//    session is only ever used for its own key, so a stream never rides a connection authenticated for
//    another workload.
//  - At most one new connection per key is being made at a time: a burst of first requests waits for
//    that one, and a second connection is opened only when the first has no stream slot left.
//  - A session carries at most maxStreams streams; slots are reserved synchronously before any await.
//  - A session that received GOAWAY, errored, timed out or closed, or whose TCP peer sent FIN, is never
//    handed out again. HTTP/2 has no half-close of the connection: the outer socket is not half-open,
//    so a peer's FIN (a daemon that died) closes the session and cancels its streams at once.
//  - Every stream the pool creates has an 'error' listener for its whole life, so a session destroyed
//    with an error (PING timeout) ends its streams without an unhandled 'error' event.
//  - A session with no stream for idleMs is closed, and one that takes no new streams when its last ends.
//  - A session retires before its streams' resets exceed what the peer takes (reset-budget.ts).
import http2 from 'node:http2';
import type { ClientHttp2Session, ClientHttp2Stream, IncomingHttpHeaders } from 'node:http2';
import type { Socket } from 'node:net';
import type { Logger } from 'pino';
import type { Certificates } from '../identity/cert-manager.js';
import { withDeadline } from '../model/deadline.js';
import { openClientConnection } from './client-connection.js';
import { CLIENT_MAX_STREAMS_PER_CONNECTION, type HboneTimeouts } from './constants.js';
import { HboneError } from './errors.js';
import { ResetBudget, shouldRetire } from './reset-budget.js';
import { formatAddress, type SocketAddress } from './headers.js';

export interface PoolKey {
  readonly srcIdentity: string;
  readonly dstIdentities: readonly string[];
  readonly nextHop: SocketAddress;
  readonly srcIp: string | undefined;
}

export function poolKeyString(k: PoolKey): string {
  return `${k.srcIdentity}|${[...k.dstIdentities].sort().join(',')}|${formatAddress(k.nextHop)}|${k.srcIp ?? '*'}`;
}

export type Dialer = (dst: SocketAddress, srcIp: string | undefined, signal: AbortSignal) => Promise<Socket>;

export interface HbonePoolOptions {
  readonly certs: Certificates;
  readonly dial: Dialer;
  readonly logger: Logger;
  readonly timeouts: HboneTimeouts;
  readonly maxStreamsPerConnection?: number;
}

export interface ConnectOptions {
  readonly key: PoolKey;
  /** :authority, "ip:port" of the final target. */
  readonly authority: string;
  readonly headers: Readonly<Record<string, string>>;
  readonly signal?: AbortSignal;
}

interface PooledSession {
  readonly session: ClientHttp2Session;
  readonly key: string;
  active: number;
  usable: boolean;
  idleTimer: NodeJS.Timeout | undefined;
  /** RST_STREAMs this session's streams may still send before the peer ends the connection. */
  readonly resets: ResetBudget;
}

export interface PoolStats {
  readonly connections: number;
  readonly streams: number;
}

export class HbonePool {
  readonly #opts: HbonePoolOptions;
  readonly #maxStreams: number;
  readonly #sessions = new Map<string, PooledSession[]>();
  readonly #connecting = new Map<string, Promise<PooledSession>>();
  #closed = false;

  constructor(opts: HbonePoolOptions) {
    this.#opts = opts;
    this.#maxStreams = opts.maxStreamsPerConnection ?? CLIENT_MAX_STREAMS_PER_CONNECTION;
  }

  get stats(): PoolStats {
    let connections = 0;
    let streams = 0;
    for (const list of this.#sessions.values()) {
      for (const s of list) {
        connections += 1;
        streams += s.active;
      }
    }
    return { connections, streams };
  }

  /**
   * Opens a CONNECT stream; resolves once the peer answered 200. A stream the peer refused unprocessed
   * (REFUSED_STREAM, or beyond its GOAWAY: a daemon draining for an upgrade) is tried again on a new
   * connection, once: nothing of it reached the destination (RFC 9113 §8.7).
   */
  async connect(opts: ConnectOptions): Promise<ClientHttp2Stream> {
    if (opts.signal !== undefined) return this.#connectRetrying(opts, opts.signal);
    return withDeadline(this.#opts.timeouts.connectResponseMs, undefined, (signal) => this.#connectRetrying(opts, signal));
  }

  async #connectRetrying(opts: ConnectOptions, signal: AbortSignal): Promise<ClientHttp2Stream> {
    try {
      return await this.#connectOnce(opts, signal);
    } catch (err) {
      if (!(err instanceof HboneError && err.refused) || signal.aborted) throw err;
      this.#opts.logger.debug({ err: err.message }, 'hbone stream refused unprocessed; trying a new connection');
      return this.#connectOnce(opts, signal);
    }
  }

  async #connectOnce(opts: ConnectOptions, signal: AbortSignal): Promise<ClientHttp2Stream> {
    const pooled = await this.#reserve(opts.key, signal);
    let stream: ClientHttp2Stream;
    try {
      stream = pooled.session.request(
        { ':method': 'CONNECT', ':authority': opts.authority, ...opts.headers },
        { endStream: false },
      );
    } catch (err) {
      this.#release(pooled);
      throw new HboneError('HBONE_SESSION', `hbone request failed: ${(err as Error).message}`, { cause: err });
    }
    // Kept for the stream's whole life: copy and the response wait add their own, and may remove theirs.
    stream.on('error', (err) => this.#opts.logger.debug({ err: err.message, key: pooled.key }, 'hbone stream error'));
    stream.on('close', () => {
      if (stream.rstCode !== undefined && stream.rstCode !== http2.constants.NGHTTP2_NO_ERROR) this.#countReset(pooled);
      this.#release(pooled);
    });
    return this.#awaitResponse(stream, opts, signal).catch((err: unknown) => {
      // A refusal means this connection takes no new streams: none goes to it again.
      if (err instanceof HboneError && err.refused) pooled.usable = false;
      throw err;
    });
  }

  #awaitResponse(stream: ClientHttp2Stream, opts: ConnectOptions, signal: AbortSignal): Promise<ClientHttp2Stream> {
    const target = `${opts.authority} via ${formatAddress(opts.key.nextHop)}`;
    return new Promise((resolve, reject) => {
      const done = (): void => {
        stream.off('response', onResponse);
        stream.off('error', onError);
        stream.off('close', onClose);
        signal.removeEventListener('abort', onAbort);
      };
      const onResponse = (headers: IncomingHttpHeaders): void => {
        done();
        const status = Number(headers[':status']);
        if (status === 200) return resolve(stream);
        stream.close(http2.constants.NGHTTP2_CANCEL);
        reject(new HboneError('HBONE_CONNECT_STATUS', `hbone ${target} answered ${status}`, { status }));
      };
      // Refused unprocessed: reset with REFUSED_STREAM, or cut by the session's GOAWAY.
      const refused = (err?: Error): boolean =>
        stream.rstCode === http2.constants.NGHTTP2_REFUSED_STREAM || (err as NodeJS.ErrnoException | undefined)?.code === 'ERR_HTTP2_GOAWAY_SESSION';
      const onError = (err: Error): void => {
        done();
        reject(new HboneError('HBONE_SESSION', `hbone ${target}: ${err.message}`, { cause: err, refused: refused(err) }));
      };
      const onClose = (): void => {
        done();
        reject(new HboneError('HBONE_SESSION', `hbone ${target}: stream closed before a response`, { refused: refused() }));
      };
      const onAbort = (): void => {
        done();
        stream.close(http2.constants.NGHTTP2_CANCEL);
        reject(new HboneError('HBONE_TIMEOUT', `hbone ${target}: no response in time`, { cause: signal.reason }));
      };
      stream.on('response', onResponse);
      stream.on('error', onError);
      stream.on('close', onClose);
      if (signal.aborted) onAbort();
      else signal.addEventListener('abort', onAbort, { once: true });
    });
  }

  async #reserve(key: PoolKey, signal: AbortSignal): Promise<PooledSession> {
    const k = poolKeyString(key);
    for (;;) {
      if (this.#closed) throw new HboneError('HBONE_POOL_CLOSED', 'hbone pool is closed');
      const free = this.#sessions.get(k)?.find((s) => s.usable && !s.session.closed && !s.session.destroyed && s.active < this.#maxStreams);
      if (free !== undefined) {
        free.active += 1;
        clearTimeout(free.idleTimer);
        return free;
      }
      const inflight = this.#connecting.get(k);
      if (inflight !== undefined) {
        await inflight; // then look again: its slots may already be taken
        continue;
      }
      const p = this.#open(k, key, signal);
      this.#connecting.set(k, p);
      try {
        await p;
      } finally {
        this.#connecting.delete(k);
      }
    }
  }

  /** A stream closed by a reset (ours, or counted as if: the peer's are rare and retiring early is cheap). */
  #countReset(pooled: PooledSession): void {
    if (pooled.session.destroyed || !pooled.usable) return;
    const left = pooled.resets.spend(Date.now());
    if (!shouldRetire(left, this.#maxStreams)) return;
    pooled.usable = false;
    this.#opts.logger.info({ key: pooled.key, resetsLeft: left }, 'hbone connection retired: its streams were reset nearly as often as the peer allows');
  }

  #release(pooled: PooledSession): void {
    pooled.active -= 1;
    if (pooled.active === 0 && !pooled.usable && !pooled.session.closed && !pooled.session.destroyed) {
      pooled.session.close();
      return;
    }
    if (pooled.active === 0 && pooled.usable) {
      clearTimeout(pooled.idleTimer);
      pooled.idleTimer = setTimeout(() => {
        pooled.usable = false;
        pooled.session.close();
      }, this.#opts.timeouts.poolIdleMs);
      pooled.idleTimer.unref();
    }
  }

  async #open(k: string, key: PoolKey, signal: AbortSignal): Promise<PooledSession> {
    const { certs, dial, logger, timeouts } = this.#opts;
    const svid = await certs.get(key.srcIdentity);
    const raw = await dial(key.nextHop, key.srcIp, signal);
    // Not half-open: a FIN from the peer ends the HTTP/2 connection (the TLS socket inherits this).
    raw.allowHalfOpen = false;
    const { tlsSocket, session } = await openClientConnection({ raw, svid, expected: new Set(key.dstIdentities), peer: key.nextHop, timeouts });
    const pooled: PooledSession = { session, key: k, active: 0, usable: true, idleTimer: undefined, resets: new ResetBudget(Date.now()) };
    const retire = (): void => {
      pooled.usable = false;
      clearTimeout(pooled.idleTimer);
      const list = this.#sessions.get(k)?.filter((s) => s !== pooled) ?? [];
      if (list.length === 0) this.#sessions.delete(k);
      else this.#sessions.set(k, list);
    };
    const unusable = (): void => {
      pooled.usable = false;
    };
    session.on('error', (err) => {
      unusable();
      logger.debug({ err: err.message, key: k }, 'hbone client session error');
    });
    session.on('goaway', unusable);
    session.on('close', retire);
    tlsSocket.once('end', () => {
      unusable();
      logger.debug({ key: k }, 'hbone peer closed the connection');
    });
    tlsSocket.once('close', unusable);
    const list = this.#sessions.get(k) ?? [];
    list.push(pooled);
    this.#sessions.set(k, list);
    logger.debug({ key: k }, 'hbone connection opened');
    return pooled;
  }

  /** Graceful: no new streams; sessions close (GOAWAY) when their streams end. */
  close(): void {
    this.#closed = true;
    for (const list of this.#sessions.values()) {
      for (const s of list) {
        s.usable = false;
        clearTimeout(s.idleTimer);
        s.session.close();
      }
    }
  }

  destroy(): void {
    this.close();
    for (const list of this.#sessions.values()) for (const s of list) s.session.destroy();
    this.#sessions.clear();
  }
}
