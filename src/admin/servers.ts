// The daemon's HTTP endpoints: admin (127.0.0.1:15000), metrics (15020) and readiness (15021).
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from 'pino';
import type { FlowBus, FlowEvent } from '../telemetry/flows.js';
import type { Metrics } from '../telemetry/metrics.js';

export interface AdminHandlers {
  /** Everything the daemon knows, as JSON. */
  readonly configDump: () => unknown;
  /** Sets the log level; returns false for an unknown level. */
  readonly setLogLevel: (level: string) => boolean;
  /** Starts a graceful drain and exit. */
  readonly quit: () => void;
  /** A successor took over (upgrade): stop accepting, drain, exit, leave the datapath to it. */
  readonly handOver?: () => void;
  /** Ends worker thread n as a crash would (its connections are lost); it is started again. False: no such worker. */
  readonly killWorker?: (n: number) => boolean;
  readonly flows: FlowBus;
}

export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const;

/** POST /logging for a process: sets every logger it made (pino children keep their own level). */
export function logLevelSetter(loggers: readonly Logger[], announce: Logger): (level: string) => boolean {
  return (level) => {
    if (!(LOG_LEVELS as readonly string[]).includes(level)) return false;
    for (const l of loggers) l.level = level;
    announce.warn({ level }, 'log level changed');
    return true;
  };
}

function json(res: http.ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json' }).end(`${JSON.stringify(body, null, 2)}\n`);
}

async function listen(server: http.Server, addr: { host: string; port: number }): Promise<AddressInfo> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(addr.port, addr.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  return server.address() as AddressInfo;
}

/** Flows as server-sent events; ?namespace= and ?verdict= filter them. */
function streamFlows(bus: FlowBus, req: http.IncomingMessage, res: http.ServerResponse, url: URL): void {
  const namespace = url.searchParams.get('namespace');
  const verdict = url.searchParams.get('verdict');
  res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'keep-alive' });
  res.write(': ztunnel-ts flows\n\n');
  const onFlow = (e: FlowEvent): void => {
    if (namespace !== null && e.src.namespace !== namespace && e.dst.namespace !== namespace) return;
    if (verdict !== null && e.verdict !== verdict) return;
    res.write(`event: ${e.type}\ndata: ${JSON.stringify(e)}\n\n`);
  };
  bus.on('flow', onFlow);
  const keepAlive = setInterval(() => res.write(': ping\n\n'), 15_000);
  req.on('close', () => {
    clearInterval(keepAlive);
    bus.off('flow', onFlow);
  });
}

export async function startAdminServer(addr: { host: string; port: number }, h: AdminHandlers): Promise<{ server: http.Server; address: AddressInfo }> {
  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://admin');
    const route = `${req.method ?? 'GET'} ${url.pathname}`;
    switch (route) {
      case 'GET /config_dump':
        // A daemon with worker threads asks them first.
        return void Promise.resolve(h.configDump()).then(
          (dump) => json(res, 200, dump),
          (err: Error) => json(res, 500, { error: err.message }),
        );
      case 'POST /logging': {
        const level = url.searchParams.get('level') ?? '';
        if (!h.setLogLevel(level)) return json(res, 400, { error: `level must be one of ${LOG_LEVELS.join(', ')}` });
        return json(res, 200, { level });
      }
      case 'POST /quitquitquit':
        json(res, 200, { draining: true });
        return h.quit();
      case 'POST /drain': {
        const handOver = h.handOver;
        if (handOver === undefined) return json(res, 404, { error: 'this process cannot hand over' });
        // The answer first: the successor waits for it, then binds the ports this process frees.
        res.once('finish', () => handOver());
        return json(res, 200, { draining: true, handOver: true });
      }
      case 'POST /workers/kill': {
        const n = Number(url.searchParams.get('id') ?? NaN);
        if (h.killWorker === undefined || !Number.isInteger(n) || !h.killWorker(n)) return json(res, 404, { error: 'no such worker (POST /workers/kill?id=N, with --workers above 1)' });
        return json(res, 200, { killed: n, restarting: true });
      }
      case 'GET /flows':
        return streamFlows(h.flows, req, res, url);
      default:
        return json(res, 404, { error: `no route ${route}`, routes: ['GET /config_dump', 'POST /logging?level=', 'POST /quitquitquit', 'POST /drain', 'POST /workers/kill?id=', 'GET /flows'] });
    }
  });
  return { server, address: await listen(server, addr) };
}

/** Anything with a registry's text: one Metrics, or a daemon's merged with its workers'. */
export type MetricsText = { readonly registry: Pick<Metrics['registry'], 'metrics' | 'contentType'> };

export async function startMetricsServer(addr: { host: string; port: number }, metrics: MetricsText): Promise<{ server: http.Server; address: AddressInfo }> {
  const server = http.createServer((req, res) => {
    const path = new URL(req.url ?? '/', 'http://metrics').pathname;
    if (req.method !== 'GET' || (path !== '/metrics' && path !== '/stats/prometheus')) return json(res, 404, { error: 'try /metrics' });
    metrics.registry.metrics().then(
      (text) => res.writeHead(200, { 'content-type': metrics.registry.contentType }).end(text),
      (err: Error) => json(res, 500, { error: err.message }),
    );
  });
  return { server, address: await listen(server, addr) };
}

/** 200 once nothing is pending; 503 listing what is. */
export async function startReadinessServer(addr: { host: string; port: number }, pending: () => string[]): Promise<{ server: http.Server; address: AddressInfo }> {
  const server = http.createServer((req, res) => {
    const path = new URL(req.url ?? '/', 'http://ready').pathname;
    if (path !== '/healthz/ready') return json(res, 404, { error: 'try /healthz/ready' });
    const p = pending();
    if (p.length === 0) res.writeHead(200, { 'content-type': 'text/plain' }).end('ready\n');
    else res.writeHead(503, { 'content-type': 'text/plain' }).end(`not ready:\n${p.map((x) => `- ${x}`).join('\n')}\n`);
  });
  return { server, address: await listen(server, addr) };
}
