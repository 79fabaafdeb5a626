// HTTP/1.1 clients for tests: an Agent whose connections are opened by any async dialer (SOCKS5 into a
// daemon, for example), with keep-alive so many requests share a connection.
import http from 'node:http';
import type { Duplex } from 'node:stream';

export function agentVia(dial: () => Promise<Duplex>): http.Agent {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 4 });
  Object.assign(agent, {
    createConnection: (_o: unknown, done: (err: Error | null, s?: Duplex) => void) => {
      dial().then((s) => done(null, s), (err: Error) => done(err));
      return undefined;
    },
  });
  return agent;
}

export interface Reply {
  readonly status: number;
  readonly body: string;
  readonly headers: http.IncomingHttpHeaders;
}

export function request(agent: http.Agent, opts: { host: string; method?: string; path?: string; headers?: Record<string, string>; body?: string }): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = http.request({ agent, method: opts.method ?? 'GET', path: opts.path ?? '/', headers: { host: opts.host, ...opts.headers } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString(), headers: res.headers }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(opts.body);
  });
}

/** An HTTP server that answers with its name, the method and path, and the peer it saw; `Upgrade: echo` echoes bytes. */
export async function startNamedHttp(ip: string, port: number, name: string): Promise<http.Server> {
  const server = http.createServer((req, res) => {
    const body = JSON.stringify({ name, method: req.method, path: req.url, peer: req.socket.remoteAddress, xff: req.headers['x-forwarded-for'] ?? null });
    req.resume();
    req.on('end', () => res.writeHead(200, { 'content-type': 'application/json', 'x-served-by': name }).end(body));
  });
  server.on('upgrade', (req: http.IncomingMessage, socket: Duplex) => {
    if (req.headers.upgrade !== 'echo') return socket.end('HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n');
    socket.write(`HTTP/1.1 101 Switching Protocols\r\nupgrade: echo\r\nconnection: upgrade\r\nx-served-by: ${name}\r\n\r\n`);
    socket.pipe(socket);
  });
  await new Promise<void>((r) => server.listen(port, ip, r));
  return server;
}
