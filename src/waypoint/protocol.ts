// Which protocol a waypoint speaks on a connection: the service port's declaration (appProtocol, or an
// Istio-style port name prefix) decides; an undeclared port is detected from the client's first bytes.
import type { Duplex } from 'node:stream';
import type { ServicePort } from '../model/types.js';

export type AppProtocol = 'http1' | 'h2c' | 'tcp';

const H2_PREFACE = 'PRI * HTTP/2.0';
const HTTP1_REQUEST_LINE = /^(GET|HEAD|POST|PUT|DELETE|CONNECT|OPTIONS|TRACE|PATCH) /;

/** undefined: detect from the first bytes. */
export function declaredProtocol(port: ServicePort | undefined): AppProtocol | 'http' | undefined {
  const declared = (port?.appProtocol ?? port?.name?.split('-')[0] ?? '').toLowerCase();
  if (declared === 'http2' || declared === 'grpc' || declared === 'kubernetes.io/h2c') return 'h2c';
  if (declared === 'http') return 'http';
  if (declared === 'tcp' || declared === 'tls' || declared === 'https' || declared === 'mongo' || declared === 'mysql' || declared === 'redis') return 'tcp';
  return undefined;
}

export function classify(first: Buffer): AppProtocol {
  const head = first.subarray(0, 16).toString('latin1');
  if (head.startsWith(H2_PREFACE)) return 'h2c';
  return HTTP1_REQUEST_LINE.test(head) ? 'http1' : 'tcp';
}

/**
 * Waits for the client's first bytes without consuming them. A client that sends nothing (a
 * server-first protocol on an undeclared port) waits, as with Istio's default of no detection timeout:
 * declare such ports as tcp.
 */
export function sniff(stream: Duplex): Promise<AppProtocol> {
  return new Promise((resolve) => {
    const done = (p: AppProtocol): void => {
      stream.off('readable', onReadable);
      stream.off('end', onEnd);
      stream.off('close', onEnd);
      resolve(p);
    };
    const onReadable = (): void => {
      const chunk = stream.read() as Buffer | null;
      if (chunk === null) return;
      stream.unshift(chunk);
      done(classify(chunk));
    };
    const onEnd = (): void => done('tcp');
    stream.on('readable', onReadable);
    stream.once('end', onEnd);
    stream.once('close', onEnd);
  });
}
