// One HBONE client connection to a peer daemon: mutual TLS as one workload's SVID, accepting only the
// SPIFFE identities the connection is for, then an HTTP/2 session with HBONE's windows and keepalive.
// The pool (pool.ts) decides when to open one and which streams ride it.
import http2, { type ClientHttp2Session } from 'node:http2';
import type { Socket } from 'node:net';
import tls, { type SecureContext, type TLSSocket } from 'node:tls';
import type { Svid } from '../identity/svid.js';
import { firstSpiffeUri } from '../model/identity.js';
import { CONNECTION_WINDOW_BYTES, MAX_SESSION_MEMORY_MB, STREAM_WINDOW_BYTES, type HboneTimeouts } from './constants.js';
import { HboneError } from './errors.js';
import { formatAddress, type SocketAddress } from './headers.js';
import { keepAlive } from './keepalive.js';
import { TLS_BASE, tlsCredentials } from './tls.js';

// One SecureContext per SVID: parsing its key, chain and roots costs more CPU than the handshake's own
// signature, and the same SVID serves every connection to every peer until it is renewed. A renewal is a
// new Svid object, so the old context goes with the old object.
const contexts = new WeakMap<Svid, SecureContext>();

export function secureContextFor(svid: Svid): SecureContext {
  let context = contexts.get(svid);
  if (context === undefined) {
    context = tls.createSecureContext({ ...TLS_BASE, ...tlsCredentials(svid) });
    contexts.set(svid, context);
  }
  return context;
}

export interface TlsDial {
  /** The connected TCP socket to the peer's HBONE port. */
  readonly raw: Socket;
  readonly svid: Svid;
  /** The identities the peer may present (the destination workload's, or its waypoint's). */
  readonly expected: ReadonlySet<string>;
  readonly peer: SocketAddress;
  readonly handshakeMs: number;
}

/** Mutual TLS over raw; rejects with an HboneError (and destroys the socket) on failure or timeout. */
export async function connectTls(d: TlsDial): Promise<TLSSocket> {
  const tlsSocket = tls.connect({
    socket: d.raw,
    ...TLS_BASE,
    secureContext: secureContextFor(d.svid),
    rejectUnauthorized: true,
    checkServerIdentity: (_host, cert) => {
      const got = firstSpiffeUri(cert.subjectaltname);
      if (got !== undefined && d.expected.has(got)) return undefined;
      return new HboneError('HBONE_IDENTITY_MISMATCH', `server ${formatAddress(d.peer)} presented ${got ?? 'no SPIFFE id'}, expected ${[...d.expected].join(' or ')}`);
    },
  });
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => tlsSocket.destroy(new HboneError('HBONE_TIMEOUT', `tls handshake with ${formatAddress(d.peer)} timed out`)), d.handshakeMs);
    const cleanup = (): void => {
      clearTimeout(timer);
      tlsSocket.off('secureConnect', ok);
      tlsSocket.off('error', fail);
      tlsSocket.off('close', closed);
    };
    const ok = (): void => {
      cleanup();
      resolve();
    };
    const fail = (err: Error): void => {
      cleanup();
      tlsSocket.destroy();
      reject(err instanceof HboneError ? err : new HboneError('HBONE_TLS', `tls with ${formatAddress(d.peer)}: ${err.message}`, { cause: err }));
    };
    const closed = (): void => fail(new Error('connection closed during handshake'));
    tlsSocket.once('secureConnect', ok);
    tlsSocket.once('error', fail);
    tlsSocket.once('close', closed);
  });
  return tlsSocket;
}

export interface ClientConnection {
  readonly tlsSocket: TLSSocket;
  readonly session: ClientHttp2Session;
}

/** The TLS handshake (bounded by timeouts.handshakeMs), then the HTTP/2 session over it, PINGed while it lives. */
export async function openClientConnection(d: Omit<TlsDial, 'handshakeMs'> & { readonly timeouts: HboneTimeouts }): Promise<ClientConnection> {
  const tlsSocket = await connectTls({ ...d, handshakeMs: d.timeouts.handshakeMs });
  const session = http2.connect(`https://${formatAddress(d.peer)}`, {
    createConnection: () => tlsSocket,
    maxSessionMemory: MAX_SESSION_MEMORY_MB,
    settings: { initialWindowSize: STREAM_WINDOW_BYTES, enablePush: false },
  });
  session.once('connect', () => session.setLocalWindowSize(CONNECTION_WINDOW_BYTES));
  keepAlive(session, d.timeouts);
  return { tlsSocket, session };
}
