// HBONE server: mTLS (TLS 1.3, client certificate required) + HTTP/2 CONNECT on port 15008.
// Clients send no SNI, so the certificate is chosen by the address the connection was sent to: one
// http2 secure server per local workload identity, and each raw accepted socket is emitted as
// 'connection' on the server of the workload it was addressed to.
import http2 from 'node:http2';
import type { IncomingHttpHeaders, ServerHttp2Session, ServerHttp2Stream } from 'node:http2';
import type { Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import type { Logger } from 'pino';
import type { Certificates } from '../identity/cert-manager.js';
import type { Svid } from '../identity/svid.js';
import { normalIp } from '../model/address.js';
import {
  CONNECTION_WINDOW_BYTES,
  MAX_SESSION_MEMORY_MB,
  SERVER_MAX_CONCURRENT_STREAMS,
  STREAM_WINDOW_BYTES,
  type HboneTimeouts,
} from './constants.js';
import { parseAuthority, type SocketAddress } from './headers.js';
import { keepAlive } from './keepalive.js';
import { MAX_UNANSWERED_RESETS, ResetGuard } from './reset-guard.js';
import { TLS_BASE, inTrustDomain, peerIdentity, tlsCredentials } from './tls.js';

export interface HboneRequest {
  readonly stream: ServerHttp2Stream;
  readonly headers: IncomingHttpHeaders;
  /** Verified SPIFFE identity of the peer. */
  readonly peerIdentity: string;
  /** The outer connection's source: the client workload's IP when sources are preserved. */
  readonly src: SocketAddress;
  /** The target from :authority, already checked against the address the connection was sent to. */
  readonly dst: SocketAddress;
  /** Identity whose certificate this side presented. */
  readonly localIdentity: string;
}

/** Why a request was answered with an error status before reaching the handler. */
export interface HboneRefusal {
  readonly status: 400;
  readonly reason: string;
  readonly peerIdentity: string;
  readonly src: SocketAddress;
  readonly authority: string | undefined;
}

export interface HboneServerOptions {
  readonly certs: Certificates;
  readonly trustDomain: string;
  readonly logger: Logger;
  readonly timeouts: HboneTimeouts;
  /** Which identity's certificate to present for a connection addressed to this IP; undefined refuses. */
  readonly identityFor: (localIp: string) => string | undefined;
  readonly onRequest: (req: HboneRequest) => void;
  readonly onRefused?: (r: HboneRefusal) => void;
  /**
   * Whether :authority must name the address the connection was sent to (true for ztunnel). A waypoint
   * is sent the original service VIP:port instead.
   */
  readonly authorityIsAddressed?: boolean;
  /** HBONE streams a peer may open at once on one connection (SETTINGS_MAX_CONCURRENT_STREAMS). */
  readonly maxConcurrentStreams?: number;
}

function connectionKey(s: Pick<Socket, 'remoteAddress' | 'remotePort' | 'localAddress' | 'localPort'>): string {
  return `${s.remoteAddress ?? ''}:${s.remotePort ?? 0}>${s.localAddress ?? ''}:${s.localPort ?? 0}`;
}

export class HboneServer {
  readonly #opts: HboneServerOptions;
  readonly #servers = new Map<string, http2.Http2SecureServer>();
  readonly #sessions = new Set<ServerHttp2Session>();
  readonly #sockets = new Set<Socket>();
  /** Accepted connections whose TLS handshake has not finished, by 4-tuple (raw and TLS sockets share it). */
  readonly #handshaking = new Map<string, NodeJS.Timeout>();
  #closing = false;
  readonly #onCertificate = (svid: Svid): void => this.#servers.get(svid.identity)?.setSecureContext(this.#tlsOptions(svid));

  constructor(opts: HboneServerOptions) {
    this.#opts = opts;
    opts.certs.on('updated', this.#onCertificate);
  }

  get sessionCount(): number {
    return this.#sessions.size;
  }

  /** Takes a raw accepted TCP socket (paused) and runs TLS + HTTP/2 on it. Never throws. */
  async accept(socket: Socket): Promise<void> {
    const { logger, identityFor, certs } = this.#opts;
    socket.on('error', (err) => logger.debug({ err: err.message }, 'hbone socket error'));
    if (this.#closing) {
      socket.destroy();
      return;
    }
    const localIp = normalIp(socket.localAddress);
    const identity = identityFor(localIp);
    if (identity === undefined) {
      logger.warn({ dst: localIp, src: normalIp(socket.remoteAddress) }, 'hbone connection to an address with no local workload');
      socket.resetAndDestroy();
      return;
    }
    let svid: Svid;
    try {
      svid = await certs.get(identity);
    } catch (err) {
      logger.warn({ identity, err: (err as Error).message }, 'hbone connection refused: no certificate');
      socket.resetAndDestroy();
      return;
    }
    if (socket.destroyed) return;
    this.#sockets.add(socket);
    // An absolute deadline for TLS: Node's handshakeTimeout is an idle timer, so a client that sends one
    // byte every few seconds would hold a handshake (and a descriptor) open forever.
    const key = connectionKey(socket);
    const deadline = setTimeout(() => {
      if (!this.#handshaking.has(key)) return;
      logger.info({ src: normalIp(socket.remoteAddress), dst: localIp }, 'hbone tls handshake did not finish in time');
      socket.destroy();
    }, this.#opts.timeouts.handshakeMs);
    deadline.unref();
    this.#handshaking.set(key, deadline);
    socket.once('close', () => {
      this.#sockets.delete(socket);
      clearTimeout(deadline);
      this.#handshaking.delete(key);
    });
    // Listeners accept half-open sockets (plain TCP needs that), but HTTP/2 has no half-close: a client
    // that sends FIN without GOAWAY is gone, and a half-open session would hold this socket and every
    // stream's upstream forever (CLOSE-WAIT). The TLS socket inherits this.
    socket.allowHalfOpen = false;
    this.#serverFor(identity, svid).emit('connection', socket);
  }

  #tlsOptions(svid: Svid): http2.SecureServerOptions {
    return { ...TLS_BASE, ...tlsCredentials(svid), requestCert: true, rejectUnauthorized: true };
  }

  #serverFor(identity: string, svid: Svid): http2.Http2SecureServer {
    const existing = this.#servers.get(identity);
    if (existing !== undefined) return existing;
    const { logger, trustDomain, timeouts } = this.#opts;
    const server = http2.createSecureServer({
      ...this.#tlsOptions(svid),
      allowHTTP1: false,
      handshakeTimeout: timeouts.handshakeMs,
      maxSessionMemory: MAX_SESSION_MEMORY_MB,
      settings: {
        initialWindowSize: STREAM_WINDOW_BYTES,
        maxConcurrentStreams: this.#opts.maxConcurrentStreams ?? SERVER_MAX_CONCURRENT_STREAMS,
        enablePush: false,
      },
    });
    // A client certificate that fails verification is dropped by Node without an error of its own (the
    // event says "socket hang up"); the verification result is on the socket.
    server.on('tlsClientError', (err, sock) =>
      logger.info({ err: sock.authorizationError ?? err.message, src: normalIp(sock.remoteAddress), identity }, 'hbone tls handshake failed'),
    );
    server.on('secureConnection', (tlsSocket: TLSSocket) => {
      const key = connectionKey(tlsSocket);
      clearTimeout(this.#handshaking.get(key));
      this.#handshaking.delete(key);
    });
    server.on('sessionError', (err) => logger.debug({ err: err.message }, 'hbone session error'));
    server.on('session', (session) => {
      const peer = peerIdentity(session.socket as unknown as TLSSocket);
      if (!inTrustDomain(peer, trustDomain)) {
        logger.warn(
          { peer: peer ?? null, src: normalIp(session.socket.remoteAddress), identity },
          'hbone peer has no SPIFFE identity in our trust domain',
        );
        session.destroy();
        return;
      }
      this.#sessions.add(session);
      session.on('close', () => this.#sessions.delete(session));
      session.on('error', (err) => logger.debug({ err: err.message }, 'hbone session error'));
      session.setLocalWindowSize(CONNECTION_WINDOW_BYTES);
      keepAlive(session, timeouts);
      const resets = new ResetGuard();
      session.on('stream', (stream, headers) => {
        stream.on('close', () => {
          if (stream.headersSent || stream.rstCode === http2.constants.NGHTTP2_NO_ERROR || session.destroyed || !resets.reset(Date.now())) return;
          logger.warn({ peer, src: normalIp(session.socket?.remoteAddress), limit: MAX_UNANSWERED_RESETS }, 'hbone session closed: too many streams reset before an answer (rapid reset)');
          session.destroy();
        });
        this.#onStream(session, peer, identity, stream, headers);
      });
    });
    this.#servers.set(identity, server);
    return server;
  }

  #onStream(
    session: ServerHttp2Session,
    peer: string,
    localIdentity: string,
    stream: ServerHttp2Stream,
    headers: IncomingHttpHeaders,
  ): void {
    stream.on('error', (err) => this.#opts.logger.debug({ err: err.message }, 'hbone stream error'));
    const sock = session.socket;
    const src = { ip: normalIp(sock.remoteAddress), port: sock.remotePort ?? 0 };
    const addressed = normalIp(sock.localAddress);
    const authority = headers[':authority'];
    const refuse = (reason: string): void => {
      this.#opts.onRefused?.({ status: 400, reason, peerIdentity: peer, src, authority });
      this.#opts.logger.info({ src, peer, authority, reason }, 'hbone request refused (400)');
      if (!stream.destroyed) stream.respond({ ':status': 400 }, { endStream: true });
    };
    if (headers[':method'] !== 'CONNECT') return refuse(`method ${String(headers[':method'])} is not CONNECT`);
    const dst = parseAuthority(authority);
    if (dst === undefined) return refuse(`bad authority ${String(authority)}`);
    if (this.#opts.authorityIsAddressed !== false && dst.ip !== addressed) return refuse(`authority ip ${dst.ip} is not the addressed ip ${addressed}`);
    this.#opts.onRequest({ stream, headers, peerIdentity: peer, src, dst, localIdentity });
  }

  /** Graceful: GOAWAY to every session, let open streams finish. */
  close(): void {
    this.#closing = true;
    for (const s of this.#sessions) s.close();
    for (const server of this.#servers.values()) server.close();
  }

  destroy(): void {
    this.#closing = true;
    this.#opts.certs.off('updated', this.#onCertificate);
    for (const s of this.#sessions) s.destroy();
    for (const sock of this.#sockets) sock.destroy();
    for (const server of this.#servers.values()) server.close();
    this.#servers.clear();
  }
}
