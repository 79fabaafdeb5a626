// An upgrade without refusal, from the new daemon's side: find this node's running daemon on the admin
// address, and once this one serves, ask it to drain (POST /drain). The old one stops accepting (its
// queued connections move to this one's listeners in the same reuseport group), keeps its open
// connections until its drain deadline, frees its ports and exits, leaving the hooks to this one.
import http from 'node:http';
import { ConfigError } from './config/config.js';

type Address = { readonly host: string; readonly port: number };

function request(method: 'GET' | 'POST', addr: Address, path: string, timeoutMs: number): Promise<{ status: number; body: string } | undefined> {
  return new Promise((resolve) => {
    const req = http.request({ host: addr.host, port: addr.port, method, path, timeout: timeoutMs }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      res.on('error', () => resolve(undefined));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', () => resolve(undefined));
    req.end();
  });
}

/** The running daemon of this node, if one answers on the admin address; another node's is an error. */
export async function findPredecessor(admin: Address, nodeName: string): Promise<Address | undefined> {
  const r = await request('GET', admin, '/config_dump', 2000);
  if (r === undefined || r.status !== 200) return undefined;
  let node: unknown;
  try {
    node = (JSON.parse(r.body) as { node?: unknown }).node;
  } catch {
    throw new ConfigError(`--admin ${admin.host}:${admin.port} is taken by something that is not a ztunnel-ts daemon`);
  }
  if (node !== nodeName) throw new ConfigError(`--admin ${admin.host}:${admin.port} is taken by the daemon of node ${String(node)}, not ${nodeName}`);
  return admin;
}

/** Tells the predecessor to drain and leave; resolves once it said yes. */
export async function askToDrain(admin: Address): Promise<void> {
  const r = await request('POST', admin, '/drain', 5000);
  if (r === undefined || r.status !== 200) throw new Error(`the running daemon did not agree to drain (${r === undefined ? 'no answer' : `${r.status} ${r.body.trim()}`})`);
}

/** Retries listen() while the predecessor still holds the port (it frees it right after agreeing to drain). */
export async function listenOnceFree<T>(what: string, listen: () => Promise<T>, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await listen();
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EADDRINUSE' || Date.now() > deadline) throw new Error(`${what}: ${(err as Error).message}`, { cause: err });
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}
