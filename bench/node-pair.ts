// The runtime's floor for the benchmark: the sidecar model's job done by Node instead of haproxy, one proxy
// in the client pod and one in the server pod, SVIDs from our CA as the haproxy pair has. Two protocols:
//   tls    mutual TLS 1.3 over TCP, one TLS connection per client connection: haproxy's job exactly
//   hbone  HBONE as the daemons speak it: one pooled HTTP/2 session over mutual TLS, CONNECT per client
//          connection, the daemons' windows
// Each moves bytes with the daemons' own copy (src/proxy/copy.ts: their pump, 1 MiB stream buffers, writes
// batched per turn) and runs with the daemons' node flags, but does nothing else: no capture, policy,
// telemetry or logs. What ztunnel-ts costs above the hbone pair is the daemon's own; what the pair costs
// above haproxy is Node's.
//
// Run as a program in a pod (`node dist/bench/node-pair.js --role out|in ...`); startNodePair starts both.
import { spawn } from 'node:child_process';
import http2 from 'node:http2';
import net from 'node:net';
import tls from 'node:tls';
import { openSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command } from 'commander';
import { DAEMON_NODE_FLAGS } from '../src/cli/node-flags.js';
import { CONNECTION_WINDOW_BYTES, MAX_SESSION_MEMORY_MB, STREAM_WINDOW_BYTES } from '../src/hbone/constants.js';
import { TLS_BASE } from '../src/hbone/tls.js';
import { copyBidirectional } from '../src/proxy/copy.js';
import { useProxyBufferSizes } from '../src/proxy/buffers.js';
import type { LabPod } from '../src/lab/plan.js';
import { issuePairSvids, type SidecarPorts } from './sidecar.js';

export type NodePairProtocol = 'tls' | 'hbone';
const SELF = fileURLToPath(import.meta.url);
/** haproxy's TLS: 1.3, no ALPN. */
const TLS13 = { minVersion: 'TLSv1.3', maxVersion: 'TLSv1.3' } as const;

interface Forward {
  readonly local: number;
  readonly remote: number;
  readonly app: number;
}

interface Credentials {
  readonly cert: string;
  readonly key: string;
  readonly ca: string;
}

const parseForwards = (s: string): Forward[] =>
  s.split(',').map((f) => {
    const [local, remote, app] = f.split(':').map(Number);
    return { local: local ?? NaN, remote: remote ?? NaN, app: app ?? NaN };
  });

/** Copies until both directions end; a failure on either side resets the other (copyBidirectional). */
const carry = (a: net.Socket | http2.Http2Stream, b: net.Socket | http2.Http2Stream): void => void copyBidirectional(a, b).catch(() => undefined);

/** The client pod's proxy: plain TCP on 127.0.0.1:local, carried to the server pod's proxy. */
function out(proto: NodePairProtocol, serverIp: string, forwards: Forward[], creds: Credentials): void {
  const client = { ...creds, servername: 'localhost', checkServerIdentity: () => undefined };
  for (const f of forwards) {
    // One session per server port, reopened when it goes (as the daemons' pool does, without its limits).
    let session: http2.ClientHttp2Session | undefined;
    const pooled = (): http2.ClientHttp2Session => {
      if (session !== undefined && !session.closed && !session.destroyed) return session;
      const s = http2.connect(`https://${serverIp}:${f.remote}`, {
        ...TLS_BASE,
        ...client,
        maxSessionMemory: MAX_SESSION_MEMORY_MB,
        settings: { initialWindowSize: STREAM_WINDOW_BYTES, enablePush: false },
      });
      s.once('connect', () => s.setLocalWindowSize(CONNECTION_WINDOW_BYTES));
      s.on('error', () => undefined);
      s.on('close', () => {
        if (session === s) session = undefined;
      });
      return (session = s);
    };
    net
      .createServer({ allowHalfOpen: true, noDelay: true, pauseOnConnect: true }, (c) => {
        c.on('error', () => undefined);
        if (proto === 'tls') {
          const up = tls.connect({ host: serverIp, port: f.remote, ...TLS13, ...client });
          up.setNoDelay(true);
          up.on('error', () => c.resetAndDestroy());
          up.once('secureConnect', () => carry(c, up));
          return;
        }
        const stream = pooled().request({ ':method': 'CONNECT', ':authority': `127.0.0.1:${f.app}` }, { endStream: false });
        stream.on('error', () => c.resetAndDestroy());
        stream.once('response', () => carry(c, stream));
      })
      .listen(f.local, '127.0.0.1');
  }
}

/** The server pod's proxy: mutual TLS (or HBONE) on serverIp:remote, carried to 127.0.0.1:app. */
function into(proto: NodePairProtocol, serverIp: string, forwards: Forward[], creds: Credentials): void {
  const server = { ...creds, requestCert: true, rejectUnauthorized: true };
  const upstream = (port: number, then: (up: net.Socket) => void, fail: () => void): void => {
    const up = net.connect({ host: '127.0.0.1', port, allowHalfOpen: true, noDelay: true });
    // Once connected, the copy owns its errors.
    up.once('error', fail);
    up.once('connect', () => {
      up.off('error', fail);
      then(up);
    });
  };
  for (const f of forwards) {
    if (proto === 'tls') {
      tls
        .createServer({ ...TLS13, ...server, allowHalfOpen: true }, (c) => {
          c.setNoDelay(true);
          c.on('error', () => undefined);
          c.pause();
          upstream(f.app, (up) => carry(c, up), () => c.destroy());
        })
        .listen(f.remote, serverIp);
      continue;
    }
    http2
      .createSecureServer({
        ...TLS_BASE,
        ...server,
        allowHTTP1: false,
        maxSessionMemory: MAX_SESSION_MEMORY_MB,
        settings: { initialWindowSize: STREAM_WINDOW_BYTES, maxConcurrentStreams: 100_000, enablePush: false },
      })
      // As the daemons' HBONE server does.
      .on('session', (s) => s.setLocalWindowSize(CONNECTION_WINDOW_BYTES))
      .on('stream', (stream, headers) => {
        stream.on('error', () => undefined);
        const port = Number(String(headers[':authority']).split(':').at(-1));
        upstream(
          port,
          (up) => {
            if (stream.destroyed) return void up.destroy();
            stream.respond({ ':status': 200 });
            carry(up, stream);
          },
          () => void (stream.headersSent ? stream.destroy() : stream.respond({ ':status': 503 }, { endStream: true })),
        );
      })
      .listen(f.remote, serverIp);
  }
}

/** Starts both proxies (client pod: out, server pod: in) with SVIDs issued into dir; returns their process ids. */
export function startNodePair(proto: NodePairProtocol, dir: string, caDir: string, client: LabPod, server: LabPod, ports: SidecarPorts): number[] {
  const svids = issuePairSvids(dir, caDir, client, server);
  const forwards = ports.forwards.map((f) => `${f.local}:${f.remote}:${f.app}`).join(',');
  return ([[client, 'out', svids.client], [server, 'in', svids.server]] as const).map(([pod, role, svid]) => {
    const args = [`--net=/run/netns/${pod.netns}`, process.execPath, ...DAEMON_NODE_FLAGS, SELF, '--role', role, '--proto', proto, '--server-ip', server.ip, '--forwards', forwards, '--cert', svid.cert, '--key', svid.key, '--ca', svids.root];
    // Its stderr (a crash's stack) to DIR/ROLE.log.
    const child = spawn('nsenter', args, { stdio: ['ignore', 'ignore', openSync(join(dir, `${role}.log`), 'a')], detached: true });
    child.unref();
    return child.pid ?? NaN;
  });
}

if (process.argv[1] === SELF) {
  const o = new Command()
    .requiredOption('--role <out|in>')
    .requiredOption('--proto <tls|hbone>')
    .requiredOption('--server-ip <ip>')
    .requiredOption('--forwards <local:remote:app,...>')
    .requiredOption('--cert <pem>')
    .requiredOption('--key <pem>')
    .requiredOption('--ca <pem>')
    .parse(process.argv)
    .opts<{ role: string; proto: NodePairProtocol; serverIp: string; forwards: string; cert: string; key: string; ca: string }>();
  useProxyBufferSizes();
  const creds: Credentials = { cert: readFileSync(o.cert, 'utf8'), key: readFileSync(o.key, 'utf8'), ca: readFileSync(o.ca, 'utf8') };
  (o.role === 'out' ? out : into)(o.proto, o.serverIp, parseForwards(o.forwards), creds);
}
