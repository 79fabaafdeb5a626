// A two-node mesh on loopback: pods are 127.<net>.<node>.<n> addresses, each daemon serves HBONE on
// its pods' IP:15008, and clients enter through each daemon's SOCKS5 listener from their pod IP.
import { mkdtempSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino, type Logger } from 'pino';
import { SocksClient } from 'socks';
import { App, type AppDeps } from '../../src/app.js';
import { configFromFlags } from '../../src/config/config.js';

export const quietLogger = (): Logger => pino({ level: process.env['TEST_LOG'] ?? 'silent' });

export interface MeshPlan {
  /** Second octet of every address, unique per test file so files can run in parallel. */
  readonly net: number;
}

export function podIp(plan: MeshPlan, node: 1 | 2, n: number): string {
  return `127.${plan.net}.${node}.${n}`;
}

export function vip(plan: MeshPlan): string {
  return `10.96.${plan.net}.10`;
}

/** Namespaces app (ambient) and legacy (not), nodes node-1/node-2, pods and an echo service. */
export function meshManifests(plan: MeshPlan, extra = ''): string {
  const pod = (ns: string, name: string, node: 1 | 2, n: number, sa: string, app: string): string => `---
apiVersion: v1
kind: Pod
metadata: { name: ${name}, namespace: ${ns}, labels: { app: ${app} } }
spec: { nodeName: node-${node}, serviceAccountName: ${sa}, containers: [{ name: main, ports: [{ name: http, containerPort: 8080 }] }] }
status: { podIP: ${podIp(plan, node, n)} }
`;
  return `apiVersion: v1
kind: Namespace
metadata: { name: app, labels: { istio.io/dataplane-mode: ambient } }
---
apiVersion: v1
kind: Namespace
metadata: { name: legacy }
---
apiVersion: v1
kind: Node
metadata: { name: node-1 }
status: { addresses: [{ type: InternalIP, address: 127.${plan.net}.1.254 }] }
---
apiVersion: v1
kind: Node
metadata: { name: node-2 }
status: { addresses: [{ type: InternalIP, address: 127.${plan.net}.2.254 }] }
${pod('app', 'client', 1, 1, 'client', 'client')}${pod('app', 'local-echo', 1, 2, 'echo', 'local-echo')}${pod('app', 'echo-a', 2, 1, 'echo', 'echo')}${pod('app', 'echo-b', 2, 2, 'echo', 'echo')}${pod('legacy', 'plain', 2, 3, 'default', 'plain')}---
apiVersion: v1
kind: Service
metadata: { name: echo, namespace: app }
spec: { clusterIP: ${vip(plan)}, selector: { app: echo }, ports: [{ name: http, port: 80, targetPort: http }] }
${extra}`;
}

export interface EchoServer {
  readonly server: net.Server;
  /** Remote IPs of accepted connections, in order. */
  readonly peers: string[];
  close(): Promise<void>;
}

/** Echoes every byte back and ends its side when the client ends (half-close aware). */
export async function startEcho(ip: string, port = 8080): Promise<EchoServer> {
  const peers: string[] = [];
  const sockets = new Set<net.Socket>();
  const server = net.createServer({ allowHalfOpen: true }, (s) => {
    peers.push(s.remoteAddress ?? '');
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => undefined);
    s.pipe(s);
  });
  await new Promise<void>((r) => server.listen(port, ip, r));
  return {
    server,
    peers,
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  };
}

export interface Mesh {
  readonly dir: string;
  readonly manifestFile: string;
  readonly node1: App;
  readonly node2: App;
  close(): Promise<void>;
}

export interface MeshOptions {
  readonly extra?: string;
  readonly certTtl?: number;
  readonly deps?: AppDeps;
  readonly caDir?: string;
  /** Receives every log line of both daemons, parsed, with the node name. */
  readonly logSink?: (line: Record<string, unknown>) => void;
  /** More `run` flags for node-1 (camelCase, as commander gives them). */
  readonly node1Flags?: Record<string, unknown>;
}

export async function startMesh(plan: MeshPlan, opts: MeshOptions = {}): Promise<Mesh> {
  const dir = mkdtempSync(join(tmpdir(), 'ztunnel-ts-test-'));
  const manifestFile = join(dir, 'mesh.yaml');
  writeFileSync(manifestFile, meshManifests(plan, opts.extra));
  const caDir = opts.caDir ?? join(dir, 'ca');
  const start = (node: string): Promise<App> =>
    App.start(
      configFromFlags({
        node,
        manifests: manifestFile,
        caDir,
        socks5: '127.0.0.1:0',
        admin: '127.0.0.1:0',
        metrics: '127.0.0.1:0',
        readiness: '127.0.0.1:0',
        drainSeconds: 1,
        ...(opts.certTtl === undefined ? {} : { certTtl: opts.certTtl }),
        ...(node === 'node-1' ? opts.node1Flags : {}),
      }),
      opts.logSink === undefined
        ? quietLogger().child({ node })
        : pino({ level: 'info' }, { write: (line: string) => opts.logSink?.(JSON.parse(line) as Record<string, unknown>) }).child({ node }),
      opts.deps,
    );
  const node1 = await start('node-1');
  const node2 = await start('node-2');
  return {
    dir,
    manifestFile,
    node1,
    node2,
    close: async () => {
      await Promise.all([node1.drain(200), node2.drain(200)]);
    },
  };
}

/** A TCP connection through a daemon's SOCKS5 listener, sent from srcIp (the pod it speaks for). */
export async function socksConnect(app: App, srcIp: string, dstIp: string, dstPort: number): Promise<net.Socket> {
  const addr = app.socksAddress;
  if (addr === undefined) throw new Error('socks5 is not enabled');
  // Our own socket: the client pod's source IP, and half-open allowed (the library's own is not).
  const raw = net.connect({ host: addr.address, port: addr.port, localAddress: srcIp, allowHalfOpen: true });
  await new Promise<void>((resolve, reject) => {
    raw.once('connect', resolve);
    raw.once('error', reject);
  });
  const { socket } = await SocksClient.createConnection({
    proxy: { host: addr.address, port: addr.port, type: 5 },
    command: 'connect',
    destination: { host: dstIp, port: dstPort },
    existing_socket: raw,
    timeout: 15_000,
  });
  socket.setNoDelay(true);
  return socket;
}

/** Sends data, half-closes, and collects everything that comes back until the far side ends. */
export function exchange(socket: net.Socket, data: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    socket.on('data', (c: Buffer) => chunks.push(c));
    socket.on('end', () => resolve(Buffer.concat(chunks)));
    socket.on('error', reject);
    socket.end(data);
  });
}

/** Writes text and resolves with the next chunk that comes back (for long-lived echo connections). */
export function roundTrip(s: net.Socket, text: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const onData = (c: Buffer): void => {
      s.off('error', reject);
      resolve(String(c));
    };
    s.once('data', onData);
    s.once('error', reject);
    s.write(text);
  });
}
