// A hand-driven HBONE client for testing what the server accepts and refuses.
import http2 from 'node:http2';
import tls from 'node:tls';

export interface RawHboneOptions {
  readonly ip: string;
  readonly port?: number;
  readonly cert?: string;
  readonly key?: string;
  readonly ca: string;
  readonly method?: string;
  readonly authority: string;
}

export interface RawHboneResult {
  readonly status?: number;
  readonly error?: string;
  /** SAN the server presented, when the handshake got that far. */
  readonly serverSan?: string;
}

export function rawHbone(o: RawHboneOptions): Promise<RawHboneResult> {
  return new Promise((resolve) => {
    let serverSan: string | undefined;
    const socket = tls.connect({
      host: o.ip,
      port: o.port ?? 15008,
      ca: o.ca,
      ...(o.cert === undefined ? {} : { cert: o.cert }),
      ...(o.key === undefined ? {} : { key: o.key }),
      ALPNProtocols: ['h2'],
      minVersion: 'TLSv1.3',
      checkServerIdentity: (_h, c) => {
        serverSan = c.subjectaltname;
        return undefined;
      },
    });
    const done = (r: RawHboneResult): void => {
      clearTimeout(timer);
      socket.destroy();
      resolve({ ...r, ...(serverSan === undefined ? {} : { serverSan }) });
    };
    const timer = setTimeout(() => done({ error: 'timeout' }), 5000);
    socket.on('error', (err) => done({ error: err.message }));
    socket.once('secureConnect', () => {
      const session = http2.connect(`https://${o.ip}`, { createConnection: () => socket });
      session.on('error', (err) => done({ error: err.message }));
      session.on('close', () => done({ error: 'session closed' }));
      const headers: http2.OutgoingHttpHeaders = { ':method': o.method ?? 'CONNECT', ':authority': o.authority };
      if ((o.method ?? 'CONNECT') !== 'CONNECT') {
        headers[':path'] = '/';
        headers[':scheme'] = 'https';
      }
      const req = session.request(headers, { endStream: false });
      req.on('response', (h) => done({ status: Number(h[':status']) }));
      req.on('error', (err) => done({ error: err.message }));
    });
  });
}
