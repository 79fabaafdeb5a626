// HBONE wire facts (DESIGN §4), in one place.
export const HBONE_PORT = 15008;
export const STREAM_WINDOW_BYTES = 4 * 1024 * 1024;
export const CONNECTION_WINDOW_BYTES = 16 * 1024 * 1024;
/**
 * The send buffer of an HBONE connection's socket: all a peer with our windows lets us send at once, with
 * room for frames and TLS records (src/datapath/send-buffer.ts says why it must hold that much).
 */
export const HBONE_SEND_BUFFER_BYTES = CONNECTION_WINDOW_BYTES + STREAM_WINDOW_BYTES;
export const SERVER_MAX_CONCURRENT_STREAMS = 200;
export const CLIENT_MAX_STREAMS_PER_CONNECTION = 100;
export const PING_INTERVAL_MS = 10_000;
export const PING_TIMEOUT_MS = 20_000;
export const HANDSHAKE_TIMEOUT_MS = 10_000;
export const CONNECT_RESPONSE_TIMEOUT_MS = 10_000;
export const POOL_IDLE_TIMEOUT_MS = 5 * 60_000;
/** nghttp2 counts buffered frames against this (in MB); generous windows need room. */
export const MAX_SESSION_MEMORY_MB = 64;
export const ALPN_H2 = 'h2';

export interface HboneTimeouts {
  readonly handshakeMs: number;
  readonly connectResponseMs: number;
  readonly pingIntervalMs: number;
  readonly pingTimeoutMs: number;
  readonly poolIdleMs: number;
}

export const DEFAULT_TIMEOUTS: HboneTimeouts = {
  handshakeMs: HANDSHAKE_TIMEOUT_MS,
  connectResponseMs: CONNECT_RESPONSE_TIMEOUT_MS,
  pingIntervalMs: PING_INTERVAL_MS,
  pingTimeoutMs: PING_TIMEOUT_MS,
  poolIdleMs: POOL_IDLE_TIMEOUT_MS,
};
